"""Run any registered exact attack against a saved model file, and measure what it recovered.

:func:`run_exact` is what ``modelsteal exact NAME --target PATH`` calls: it prepares the target the
attack needs from the file (confidences, labels only, leaf identities, or a float64 two-layer ReLU
network), fills the query domain from the data, runs the attack and reports agreement with the
target on the data's test split and on uniform inputs over the domain.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from modelsteal.attacks.exact._base import EXACT_ATTACKS, ExactResult
from modelsteal.errors import InvalidParameterError
from modelsteal.targets import label_only, load_target

LABEL_ONLY = ("lowd_meek", "adaptive_retraining")
RELU = ("relu_from_gradients", "relu_from_logits")
SKLEARN = ("equation_solving_lr", "equation_solving_softmax", "equation_solving_mlp", *LABEL_ONLY)


def canonical_name(name: str) -> str:
    """``relu-from-gradients`` → ``relu_from_gradients``; an unknown name raises, listing all."""
    key = str(name).strip().replace("-", "_")
    EXACT_ATTACKS.get(key)
    return key


def _load_data(target_path: Path, data: str | None, data_dir: str | os.PathLike | None):
    from modelsteal.workflows import split_config_for

    split = split_config_for(
        target_path,
        overrides={"data": data},
        data_dir=None if data_dir is None else str(data_dir),
    )
    return split.load(ood=None)


def _relu_target(path: Path):
    from modelsteal.attacks.exact.gradients import ReluNetTarget
    from modelsteal.models import load_model

    if path.suffix.lower() not in (".pt", ".pth"):
        raise InvalidParameterError(
            f"The ReLU attacks need a modelsteal .pt bundle of an 'mlp' with one hidden layer and "
            f"2 classes. Got {path.name} instead."
        )
    module, info = load_model(path)
    if info.arch != "mlp" or info.n_classes != 2:
        raise InvalidParameterError(
            f"The ReLU attacks need an 'mlp' bundle with one hidden layer and 2 classes; "
            f"{path.name} holds a {info.arch!r} with {info.n_classes} classes."
        )
    return ReluNetTarget.from_bundle_model(module)


def _tree_target(path: Path):
    import joblib

    from modelsteal.attacks.exact.trees import LeafTarget

    if path.suffix.lower() not in (".joblib", ".pkl", ".pickle"):
        raise InvalidParameterError(
            f"tree_path_finding needs a scikit-learn DecisionTreeClassifier saved with joblib. "
            f"Got {path.name} instead."
        )
    return LeafTarget(joblib.load(path))


def run_exact(
    name: str,
    target_path: str | os.PathLike,
    *,
    data: str | None = None,
    params: dict[str, Any] | None = None,
    budget: int | None = None,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    n_uniform: int = 10_000,
) -> tuple[ExactResult, dict[str, Any]]:
    """Run the exact attack ``name`` against the model file at ``target_path``.

    How the file becomes the attack's target:

    - ``equation_solving_*``: a scikit-learn classifier (``.joblib``/``.pkl``) answering
      probabilities; ``lowd_meek`` and ``adaptive_retraining`` see its labels only.
    - ``tree_path_finding``: a fitted ``DecisionTreeClassifier`` answering leaf identities
      (:class:`LeafTarget`); every feature is treated as continuous unless ``params["kinds"]``
      says otherwise.
    - ``relu_from_gradients`` / ``relu_from_logits``: a ``.pt`` bundle of a registry ``mlp`` with
      one hidden layer and 2 classes, converted exactly to a float64 :class:`ReluNetTarget`.

    ``data`` (a data set name or a ``.csv``/``.npz`` file; default: the one a bundle was trained
    on) gives the test split and the query domain: per-feature min/max over all its rows for
    trees; mean ± one standard deviation of the attacker pool for the linear attacks (wider boxes
    saturate probabilities); ``params["domain"]`` overrides either. Returns the attack's result
    and a report: queries, agreement with the target on the test split and on ``n_uniform``
    inputs uniform over the domain, and for the ReLU attacks the relative error
    ``max |f̂ − f| / max |f|`` on both.
    """
    key = canonical_name(name)
    path = Path(target_path)
    if not path.is_file():
        raise FileNotFoundError(f"No model file at {path}.")
    params = dict(params or {})
    splits = _load_data(path, data, data_dir)
    X_all = np.concatenate(
        [
            splits.target_train.X.reshape(len(splits.target_train.X), -1),
            splits.attacker_pool.X.reshape(len(splits.attacker_pool.X), -1),
            splits.target_test.X.reshape(len(splits.target_test.X), -1),
        ]
    ).astype(np.float64)
    pool = splits.attacker_pool.X.reshape(len(splits.attacker_pool.X), -1).astype(np.float64)
    X_test = splits.target_test.X.reshape(len(splits.target_test.X), -1).astype(np.float32)

    reference = None  # answers the target's labels (and scores for ReLU) for the report
    if key in RELU:
        target = _relu_target(path)
        reference = target
        lo, hi = X_all.min(0), X_all.max(0)
    elif key == "tree_path_finding":
        target = _tree_target(path)
        lo, hi = X_all.min(0), X_all.max(0)
        params.setdefault("domain", (lo, hi))
    elif key in SKLEARN:
        if path.suffix.lower() not in (".joblib", ".pkl", ".pickle"):
            raise InvalidParameterError(
                f"{key} attacks a scikit-learn classifier saved with joblib (.joblib/.pkl). Got "
                f"{path.name} instead."
            )
        target = load_target(path)
        mean, std = pool.mean(0), pool.std(0)
        std = np.where(std > 0, std, 1.0)
        lo, hi = mean - std, mean + std
        params.setdefault("domain", (lo, hi))
        if key in LABEL_ONLY:
            target = label_only(target)
    else:  # a newly registered attack: give it the plain target
        target = load_target(path)
        lo, hi = X_all.min(0), X_all.max(0)
    if "domain" in params:
        lo, hi = (
            np.broadcast_to(np.asarray(v, dtype=np.float64), lo.shape) for v in params["domain"]
        )
    d = int(np.prod(target.input_shape))
    if X_test.shape[1] != d:
        raise InvalidParameterError(
            f"The target takes {d} features but the data has {X_test.shape[1]}; the data does not "
            "fit this model."
        )
    attack = EXACT_ATTACKS.get(key)
    try:
        result = attack(target, seed=seed, budget=budget, **params)
    except TypeError as exc:
        raise InvalidParameterError(f"Exact attack {key!r}: {exc}") from None

    rng = np.random.default_rng(seed)
    U = rng.uniform(lo, hi, size=(n_uniform, d))
    shape = tuple(target.input_shape)
    report: dict[str, Any] = {
        "attack": key,
        "target": str(path),
        "data": splits.name,
        "queries": result.queries,
        "budget": result.budget,
        "test_rows": len(X_test),
        "uniform_rows": n_uniform,
    }
    for label, X in (("test", X_test.astype(np.float64)), ("uniform", U)):
        mine = result.predict(X.reshape(len(X), *shape))
        if key in RELU:
            theirs = reference.query(X).argmax(axis=1)
            f, g = reference.score(X), result.model.score(X)
            report[f"rel_error_{label}"] = float(np.abs(f - g).max() / max(np.abs(f).max(), 1e-300))
        elif key == "tree_path_finding":
            theirs = target.tree.predict_proba(X.astype(np.float32)).argmax(axis=1)
        else:
            raw = target.target if key in LABEL_ONLY else target
            theirs = raw.query(X.astype(np.float32).reshape(len(X), *shape)).argmax(axis=1)
        report[f"agreement_{label}"] = float(np.mean(mine == theirs))
    report["info"] = _plain(result.info)
    return result, report


def _plain(value: Any) -> Any:
    """Numpy scalars and arrays as JSON-ready Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _flat_params(params: dict[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for k, v in params.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat_params(v, prefix=f"{name}/"))
        else:
            out[name] = np.asarray(v)
    return out


def save_exact(result: ExactResult, report: dict[str, Any], out: str | os.PathLike) -> list[Path]:
    """Write ``result.json`` (the report) and ``params.npz`` (recovered parameters) in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "result.json"
    json_path.write_text(json.dumps(_plain(report), indent=2, default=str))
    npz_path = out / "params.npz"
    np.savez(npz_path, **_flat_params(result.params))
    return [json_path, npz_path]
