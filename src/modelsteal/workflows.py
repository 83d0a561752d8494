"""The library calls behind the CLI: train a target, steal it, run the demo.

Each function takes plain values, returns plain values and writes files only where told to.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelsteal.attacks import ExtractionResult, Progress, build_recipe, extract
from modelsteal.attacks.training import default_architecture
from modelsteal.data import Splits, load_splits
from modelsteal.errors import InvalidParameterError
from modelsteal.metrics import accuracy
from modelsteal.models import (
    ModelInfo,
    TrainConfig,
    build_model,
    predict_proba,
    save_model,
    train_model,
)
from modelsteal.reports import write_extraction_report
from modelsteal.targets import HttpTarget, Target, label_only

log = logging.getLogger(__name__)

SPLIT_KEYS = ("data", "split_seed", "pool_fraction", "test_fraction", "max_train", "label_column")


@dataclass(frozen=True)
class SplitConfig:
    """How a data set is split; stored in a target's bundle so ``steal`` can rebuild the splits."""

    data: str
    split_seed: int = 0
    pool_fraction: float = 0.5
    test_fraction: float = 0.25
    max_train: int | None = None
    label_column: str = "label"
    data_dir: str | None = field(default=None, compare=False)

    def load(self, *, ood: str | None = None) -> Splits:
        return load_splits(
            self.data,
            data_dir=self.data_dir,
            seed=self.split_seed,
            pool_fraction=self.pool_fraction,
            test_fraction=self.test_fraction,
            max_train=self.max_train,
            label_column=self.label_column,
            ood=ood,
        )

    def as_metadata(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in SPLIT_KEYS}


@dataclass(frozen=True)
class TrainedTarget:
    model: Any
    info: ModelInfo
    test_accuracy: float
    path: Path | None


def train_target(
    split: SplitConfig,
    *,
    arch: str = "auto",
    params: dict[str, Any] | None = None,
    config: TrainConfig = TrainConfig(),
    seed: int = 0,
    out: str | Path | None = None,
    on_epoch=None,
) -> TrainedTarget:
    """Train a target on ``split``'s target-train part; measure it on target-test; save it."""
    splits = split.load(ood=None)
    arch = default_architecture(splits.input_shape) if arch == "auto" else arch
    params = dict(params or {})
    model = build_model(arch, splits.input_shape, splits.n_classes, seed=seed, **params)
    train_model(
        model,
        splits.target_train.X,
        splits.target_train.y,
        config=config,
        seed=seed,
        on_epoch=on_epoch,
    )
    acc = accuracy(splits.target_test.y, predict_proba(model, splits.target_test.X))
    info = ModelInfo(
        arch=arch,
        input_shape=tuple(splits.input_shape),
        n_classes=splits.n_classes,
        params=params,
        metadata={
            **split.as_metadata(),
            "seed": seed,
            "epochs": config.epochs,
            "test_accuracy": acc,
            "class_names": [str(c) for c in splits.class_names],
        },
    )
    path = save_model(out, model, info) if out is not None else None
    return TrainedTarget(model=model, info=info, test_accuracy=acc, path=path)


def split_config_for(
    target_path: str | Path, *, overrides: dict[str, Any], data_dir: str | None
) -> SplitConfig:
    """The split a target was trained with (from its bundle), with explicit ``overrides`` on top."""
    meta: dict[str, Any] = {}
    if Path(target_path).suffix in (".pt", ".pth"):
        from modelsteal.models import load_model
        from modelsteal.models._io import is_bundle

        try:
            import torch

            if is_bundle(torch.load(target_path, map_location="cpu", weights_only=True)):
                meta = load_model(target_path)[1].metadata
        except Exception:  # TorchScript or foreign file: no stored split
            meta = {}
    values = {k: meta[k] for k in SPLIT_KEYS if k in meta}
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "data" not in values:
        raise InvalidParameterError(
            f"{target_path} does not say which data it was trained on: pass --data NAME or a "
            "CSV/NPZ path."
        )
    return SplitConfig(**values, data_dir=data_dir)


def steal(
    target: Target,
    splits: Splits,
    *,
    recipe: str = "knockoff",
    recipe_params: dict[str, Any] | None = None,
    budgets: Sequence[int],
    seed: int = 0,
    labels_only: bool = False,
    progress: Progress | None = None,
) -> ExtractionResult:
    """Run ``recipe`` against ``target`` with the splits' attacker pool, measured on target-test."""
    if tuple(target.input_shape) != tuple(splits.input_shape):
        raise InvalidParameterError(
            f"The target takes inputs of shape {tuple(target.input_shape)} but data set "
            f"{splits.name!r} has inputs of shape {tuple(splits.input_shape)}."
        )
    if target.n_classes != splits.n_classes:
        raise InvalidParameterError(
            f"The target answers {target.n_classes} classes but data set {splits.name!r} has "
            f"{splits.n_classes}."
        )
    _check_class_order(target, splits)
    budgets = sorted(set(budgets))
    return extract(
        label_only(target) if labels_only else target,
        build_recipe(recipe, **dict(recipe_params or {})),
        pool=splits.attacker_pool.X,
        budget=budgets[-1],
        schedule=budgets,
        seed=seed,
        eval_x=splits.target_test.X,
        eval_y=splits.target_test.y,
        domain=splits.domain,
        # A remote target bills every row: fidelity would spend the attacker's quota on
        # evaluation, so it is measured only for local targets.
        measure_fidelity=not isinstance(target, HttpTarget),
        progress=progress,
    )


def _check_class_order(target: Target, splits: Splits) -> None:
    """A scikit-learn target's columns follow its ``classes_``; they must be the data's classes in
    the data's order, else accuracy and fidelity would compare the wrong columns."""
    classes = getattr(target, "classes", None)
    if classes is None:
        return
    names = [str(c) for c in classes]
    if names == [str(i) for i in range(len(names))]:
        return  # labels already coded as 0..C-1
    if names != [str(c) for c in splits.class_names]:
        raise InvalidParameterError(
            f"The target's classes {names} differ from the classes of data set {splits.name!r} "
            f"{list(splits.class_names)}; train the model on the same labels."
        )


def resolve_params(params: dict[str, Any]) -> dict[str, Any]:
    """Replace values that name a model bundle (``*.pt``) by the loaded model, so that a config
    file or the CLI can pass a defender's model (MAD's proxy, AM's misinformation model)."""
    from modelsteal.models import load_model

    out = {}
    for key, value in params.items():
        if isinstance(value, str) and value.endswith((".pt", ".pth")):
            value = load_model(value)[0]
        out[key] = value
    return out


def defend(
    target: Target,
    splits: Splits,
    *,
    defense: str,
    params: dict[str, Any] | None = None,
    sweep: dict[str, Sequence[Any]] | None = None,
    batch_size: int = 256,
) -> list[dict[str, Any]]:
    """Utility of ``defense`` in front of ``target`` on the splits' test (and OOD) data.

    ``sweep`` maps one parameter to the values to try (e.g. ``{"epsilon": [0.5, 1.0]}``); each
    value gets a fresh defense (fresh state). Returns one row of plain values per setting.
    """
    from modelsteal.defenses import build_defense, evaluate_defense

    base = resolve_params(dict(params or {}))
    if sweep and len(sweep) > 1:
        raise InvalidParameterError(f"Sweep one parameter at a time. Got {sorted(sweep)} instead.")
    settings = [{}]
    if sweep:
        ((key, values),) = sweep.items()
        settings = [{key: v} for v in values]
    rows = []
    for setting in settings:
        built = build_defense(defense, **{**base, **setting})
        row = evaluate_defense(
            target,
            built,
            test_x=splits.target_test.X,
            test_y=splits.target_test.y,
            ood_x=None if splits.ood is None else splits.ood.X,
            batch_size=batch_size,
        )
        rows.append({**row, **setting})
    return rows


DEMO_BUDGETS = (50, 100, 200, 400, 700, 1000)


@dataclass(frozen=True)
class DemoResult:
    target_accuracy: float
    curves: dict[str, list[dict[str, float]]]
    paths: dict[str, Path]


def run_demo(
    out_dir: str | Path,
    *,
    budgets: Sequence[int] = DEMO_BUDGETS,
    seed: int = 0,
    progress: Progress | None = None,
) -> DemoResult:
    """Train an MLP target on scikit-learn's digits, steal it with KnockoffNets at ``budgets``
    from probabilities and from labels only, and write the report into ``out_dir``."""
    split = SplitConfig(data="digits", split_seed=seed, pool_fraction=0.7, test_fraction=0.2)
    trained = train_target(
        split, arch="mlp", config=TrainConfig(epochs=60, batch_size=32), seed=seed
    )
    splits = split.load(ood=None)
    from modelsteal.targets import TorchTarget

    target = TorchTarget(trained.model, input_shape=splits.input_shape)
    curves: dict[str, list[dict[str, float]]] = {}
    for label, hard in (("probabilities", False), ("labels only", True)):
        result = steal(
            target, splits, budgets=budgets, seed=seed, labels_only=hard, progress=progress
        )
        curves[f"knockoff, {label}"] = result.history
    meta = {
        "data": "digits (scikit-learn)",
        "target": "mlp",
        "target_train_rows": len(splits.target_train),
        "attacker_pool_rows": len(splits.attacker_pool),
        "test_rows": len(splits.target_test),
        "target test accuracy": trained.test_accuracy,
        "seed": seed,
        "command": "modelsteal demo",
    }
    paths = write_extraction_report(
        out_dir, curves, meta=meta, title="KnockoffNets against a digits MLP"
    )
    return DemoResult(target_accuracy=trained.test_accuracy, curves=curves, paths=paths)


def parse_budgets(text: str) -> list[int]:
    """``"1000,5000,10k"`` → ``[1000, 5000, 10000]``."""
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        mult = 1000 if part.endswith("k") else 1
        try:
            value = int(float(part.rstrip("k")) * mult)
        except ValueError:
            raise InvalidParameterError(
                f"Budgets must be a comma-separated list of positive ints such as 1000,5000,10k. "
                f"Got {text!r} instead."
            ) from None
        if value <= 0:
            raise InvalidParameterError(f"Budgets must be positive. Got {value} in {text!r}.")
        out.append(value)
    if not out:
        raise InvalidParameterError(f"No budget given in {text!r}; e.g. --budgets 1000,5000.")
    return sorted(set(out))
