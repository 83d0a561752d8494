"""The multiplicity study of one task, end to end: config → target → theft → Rashomon set → report.

:func:`load_config` reads and validates a small TOML file (see ``configs/multiplicity_*.toml``);
:func:`run_multiplicity` runs it and returns every number as plain values; :func:`write_report`
writes them (Markdown, CSV, JSON, PNG plots) into a folder. For each seed of the config:

1. the task's data set is split (:func:`~modelsteal.data.split_bundle`; numeric columns z-scored
   on the target-train rows) and the target is trained on target-train;
2. the attacker draws ``attack.budget`` rows from the attacker pool (seeded, without
   replacement), queries the target through a budgeted wrapper (probabilities, or top-1 labels
   with ``answers = "labels"``) and keeps ``attack.holdout_fraction`` of the answered queries aside;
3. the base surrogate ``h0`` is trained on the other queries; each sampler of
   ``rashomon.samplers`` then draws ``rashomon.n_models`` models from the same queries:
   ``retrain`` (new initialisation and data order), ``dropout`` (fixed-mask dropout variants of
   ``h0``) and ``awp`` (adversarial weight perturbations of ``h0``, its walks spread evenly over the
   positive ε of the sweep, each stopping at its own ε);
4. for each sampler and each ε, the Rashomon set is the sampled models (with ``h0``) whose loss
   against the target's answers on the held-out queries is within ε of ``h0``'s
   (``reference = "base"``) or of the best model's (``"best"``) — cross-entropy in nats, or with
   ``criterion = "fidelity"`` held-out agreement with the target within ε; ``criterion =
   ["loss", "fidelity"]`` reports both);
5. on the evaluation rows (the target's test set, subsampled to ``data.max_eval``), the set is
   measured: fidelity and accuracy range, ambiguity and discrepancy against ``h0`` and against the
   target, mean disagreement and viable prediction range, Rashomon capacity quantiles, and the
   spread of every group-fairness metric beside the target's value. Rashomon capacity is
   computed on a seeded subsample of at most ``rashomon.rc_max_samples`` of those rows.
"""

from __future__ import annotations

import logging
import math
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from modelsteal._checks import check_choice, check_float, check_int
from modelsteal.data import DataBundle, Splits, load_dataset, load_sst2, split_bundle
from modelsteal.errors import InvalidParameterError
from modelsteal.metrics import accuracy
from modelsteal.models import MODELS, TrainConfig, build_model, predict_proba, train_model
from modelsteal.multiplicity.awp import sample_awp
from modelsteal.multiplicity.fairness import FAIRNESS_METRICS, fairness_values, spread_summary
from modelsteal.multiplicity.metrics import (
    ambiguity,
    disagreement,
    discrepancy,
    rashomon_capacity,
    summarise,
    viable_prediction_range,
)
from modelsteal.multiplicity.sampling import (
    rashomon_set,
    sample_dropout,
    sample_retrained,
    stack_scores,
)
from modelsteal.targets import TorchTarget, budgeted, label_only

log = logging.getLogger(__name__)

TASKS = ("adult", "compas", "pneumoniamnist", "sst2")
SAMPLERS = ("retrain", "dropout", "awp")
#: Short names of the fairness metrics in column names.
SHORT = {
    "demographic_parity_difference": "dp",
    "equalized_odds_difference": "eodds",
    "equal_opportunity_difference": "eopp",
    "accuracy_difference": "acc_gap",
}

# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataSettings:
    data_dir: str | None = None
    pool_fraction: float = 0.5
    test_fraction: float = 0.25
    max_train: int | None = None
    max_eval: int | None = None
    sensitive: tuple[str, ...] | None = None
    min_group_size: int = 30
    features: str = "tfidf"
    vocabulary_size: int = 1000


@dataclass(frozen=True)
class ModelSettings:
    arch: str = "mlp"
    params: dict[str, Any] = field(default_factory=dict)
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
        )


@dataclass(frozen=True)
class AttackSettings:
    budget: int = 2000
    answers: str = "probabilities"
    holdout_fraction: float = 0.25


@dataclass(frozen=True)
class DropoutSettings:
    kind: str = "gaussian"
    p_max: float = 0.2
    n_p: int = 10


@dataclass(frozen=True)
class AWPSettings:
    direction: str = "ascent"
    step_size: float = 0.005
    max_steps: int = 100
    batch_size: int = 64
    refine: int = 8


@dataclass(frozen=True)
class RashomonSettings:
    samplers: tuple[str, ...] = SAMPLERS
    n_models: int = 50
    epsilons: tuple[float, ...] = (0.0, 0.005, 0.01, 0.02, 0.04)
    criterion: tuple[str, ...] = ("loss",)
    reference: str = "base"
    rc_max_samples: int = 2000
    dropout: DropoutSettings = DropoutSettings()
    awp: AWPSettings = AWPSettings()


@dataclass(frozen=True)
class MultiplicityConfig:
    """A validated multiplicity study (see :func:`load_config` for the TOML keys)."""

    task: str
    seeds: tuple[int, ...] = (0,)
    data: DataSettings = DataSettings()
    target: ModelSettings = ModelSettings()
    attack: AttackSettings = AttackSettings()
    surrogate: ModelSettings = ModelSettings()
    rashomon: RashomonSettings = RashomonSettings()
    source: str = field(default="config", compare=False)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("source")
        return out


_SECTIONS = {
    "data": DataSettings,
    "target": ModelSettings,
    "attack": AttackSettings,
    "surrogate": ModelSettings,
    "rashomon": RashomonSettings,
}
_SUBSECTIONS = {"rashomon.dropout": DropoutSettings, "rashomon.awp": AWPSettings}


class _Checker:
    """Validates one config file; every message names the offending key."""

    def __init__(self, source: str) -> None:
        self.owner = f"multiplicity config {source}"

    def fail(self, key: str, expectation: str, value: Any) -> InvalidParameterError:
        return InvalidParameterError(
            f"The {key!r} setting of {self.owner} must be {expectation}. Got {value!r} instead."
        )

    def keys(self, table: Any, known: Sequence[str], prefix: str) -> dict[str, Any]:
        where = f"[{prefix}]" if prefix else "the top level"
        if not isinstance(table, dict):
            raise InvalidParameterError(
                f"The {prefix!r} setting of {self.owner} must be a table ([{prefix}]). "
                f"Got {table!r} instead."
            )
        unknown = [k for k in table if k not in known]
        if unknown:
            full = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
            raise InvalidParameterError(
                f"Unknown key {full!r} in {where} of {self.owner}. Known keys there: "
                f"{', '.join(sorted(known))}."
            )
        return table

    def _call(self, fn: Callable[..., Any], value: Any, key: str, **kw: Any) -> Any:
        try:
            return fn(value, name=key, owner=self.owner, **kw)
        except InvalidParameterError as exc:  # same template, worded for a config file
            msg = str(exc).replace(" parameter of ", " setting of ", 1)
            raise InvalidParameterError(msg) from None

    def int_(self, key: str, value: Any, *, low: int | None = None, optional: bool = False):
        if optional and value is None:
            return None
        return self._call(check_int, value, key, low=low)

    def float_(self, key: str, value: Any, **kw: Any) -> float:
        return self._call(check_float, value, key, **kw)

    def choice(self, key: str, value: Any, choices: Sequence[str]) -> str:
        return self._call(check_choice, value, key, choices=choices)

    def str_list(self, key: str, value: Any, choices: Sequence[str] | None = None):
        if isinstance(value, str) or not isinstance(value, list) or not value:
            raise self.fail(key, "a non-empty list of strings", value)
        for v in value:
            if not isinstance(v, str) or (choices is not None and v not in choices):
                what = "strings" if choices is None else "names among " + ", ".join(choices)
                raise self.fail(key, f"a non-empty list of {what}", value)
        if len(set(value)) != len(value):
            raise self.fail(key, "a list without repeated names", value)
        return tuple(value)


def _model(chk: _Checker, section: str, table: dict[str, Any]) -> ModelSettings:
    arch = table.get("arch", ModelSettings.arch)
    chk.choice(f"{section}.arch", arch, MODELS.names())
    params = table.get("params", {})
    if not isinstance(params, dict):
        raise chk.fail(f"{section}.params", "a table of architecture parameters", params)
    return ModelSettings(
        arch=arch,
        params=dict(params),
        epochs=chk.int_(f"{section}.epochs", table.get("epochs", 20), low=1),
        batch_size=chk.int_(f"{section}.batch_size", table.get("batch_size", 64), low=1),
        lr=chk.float_(f"{section}.lr", table.get("lr", 1e-3), low=0.0, low_open=True),
        weight_decay=chk.float_(f"{section}.weight_decay", table.get("weight_decay", 0.0), low=0),
    )


def parse_config(raw: Mapping[str, Any], *, source: str = "config") -> MultiplicityConfig:
    """Validate a parsed TOML mapping; see :func:`load_config`."""
    chk = _Checker(source)
    top = chk.keys(dict(raw), ["task", "seeds", *_SECTIONS], "")
    if "task" not in top:
        raise InvalidParameterError(
            f"The 'task' setting of {chk.owner} is missing; set task = one of {', '.join(TASKS)}."
        )
    task = chk.choice("task", top["task"], TASKS)
    seeds = top.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds:
        raise chk.fail("seeds", "a non-empty list of ints >= 0", seeds)
    seeds = tuple(chk.int_("seeds", s, low=0) for s in seeds)
    tables = {s: chk.keys(top.get(s, {}), _fields(cls), s) for s, cls in _SECTIONS.items()}
    for sub, cls in _SUBSECTIONS.items():
        parent, name = sub.split(".")
        tables[sub] = chk.keys(tables[parent].get(name, {}), _fields(cls), sub)

    d = tables["data"]
    data_dir = d.get("data_dir")
    if data_dir is not None and (not isinstance(data_dir, str) or not data_dir.strip()):
        raise chk.fail("data.data_dir", "a folder path (string)", data_dir)
    sensitive = d.get("sensitive")
    data = DataSettings(
        data_dir=data_dir,
        pool_fraction=chk.float_(
            "data.pool_fraction",
            d.get("pool_fraction", 0.5),
            low=0,
            high=1,
            low_open=True,
            high_open=True,
        ),
        test_fraction=chk.float_(
            "data.test_fraction",
            d.get("test_fraction", 0.25),
            low=0,
            high=1,
            low_open=True,
            high_open=True,
        ),
        max_train=chk.int_("data.max_train", d.get("max_train"), low=1, optional=True),
        max_eval=chk.int_("data.max_eval", d.get("max_eval"), low=2, optional=True),
        sensitive=None if sensitive is None else chk.str_list("data.sensitive", sensitive),
        min_group_size=chk.int_("data.min_group_size", d.get("min_group_size", 30), low=1),
        features=chk.choice(
            "data.features", d.get("features", "tfidf"), ("tfidf", "minilm", "auto")
        ),
        vocabulary_size=chk.int_("data.vocabulary_size", d.get("vocabulary_size", 1000), low=2),
    )
    a = tables["attack"]
    attack = AttackSettings(
        budget=chk.int_("attack.budget", a.get("budget", 2000), low=4),
        answers=chk.choice(
            "attack.answers", a.get("answers", "probabilities"), ("probabilities", "labels")
        ),
        holdout_fraction=chk.float_(
            "attack.holdout_fraction",
            a.get("holdout_fraction", 0.25),
            low=0,
            high=1,
            low_open=True,
            high_open=True,
        ),
    )
    r, rd, ra = tables["rashomon"], tables["rashomon.dropout"], tables["rashomon.awp"]
    eps = r.get("epsilons", list(RashomonSettings.epsilons))
    if not isinstance(eps, list) or not eps:
        raise chk.fail("rashomon.epsilons", "a non-empty list of floats >= 0", eps)
    eps = tuple(sorted({chk.float_("rashomon.epsilons", e, low=0.0) for e in eps}))
    rashomon = RashomonSettings(
        samplers=chk.str_list("rashomon.samplers", r.get("samplers", list(SAMPLERS)), SAMPLERS),
        n_models=chk.int_("rashomon.n_models", r.get("n_models", 50), low=1),
        epsilons=eps,
        criterion=chk.str_list(
            "rashomon.criterion",
            [crit] if isinstance(crit := r.get("criterion", "loss"), str) else crit,
            ("loss", "fidelity"),
        ),
        reference=chk.choice("rashomon.reference", r.get("reference", "base"), ("base", "best")),
        rc_max_samples=chk.int_("rashomon.rc_max_samples", r.get("rc_max_samples", 2000), low=1),
        dropout=DropoutSettings(
            kind=chk.choice(
                "rashomon.dropout.kind", rd.get("kind", "gaussian"), ("bernoulli", "gaussian")
            ),
            p_max=chk.float_(
                "rashomon.dropout.p_max",
                rd.get("p_max", 0.2),
                low=0,
                high=1,
                low_open=True,
                high_open=rd.get("kind", "gaussian") == "bernoulli",
            ),
            n_p=chk.int_("rashomon.dropout.n_p", rd.get("n_p", 10), low=1),
        ),
        awp=AWPSettings(
            direction=chk.choice(
                "rashomon.awp.direction", ra.get("direction", "ascent"), ("ascent", "random")
            ),
            step_size=chk.float_(
                "rashomon.awp.step_size", ra.get("step_size", 0.005), low=0, low_open=True
            ),
            max_steps=chk.int_("rashomon.awp.max_steps", ra.get("max_steps", 100), low=1),
            batch_size=chk.int_("rashomon.awp.batch_size", ra.get("batch_size", 64), low=1),
            refine=chk.int_("rashomon.awp.refine", ra.get("refine", 8), low=0),
        ),
    )
    return MultiplicityConfig(
        task=task,
        seeds=seeds,
        data=data,
        target=_model(chk, "target", tables["target"]),
        attack=attack,
        surrogate=_model(chk, "surrogate", tables["surrogate"]),
        rashomon=rashomon,
        source=source,
    )


def _fields(cls: type) -> list[str]:
    return list(cls.__dataclass_fields__)


def load_config(path: str | Path) -> MultiplicityConfig:
    """Read and validate a multiplicity TOML file.

    Top level: ``task`` (required: adult, compas, pneumoniamnist or sst2) and ``seeds``. Tables:
    ``[data]`` (data_dir, pool_fraction, test_fraction, max_train, max_eval, sensitive,
    min_group_size, features, vocabulary_size), ``[target]`` and ``[surrogate]`` (arch, params,
    epochs, batch_size, lr, weight_decay), ``[attack]`` (budget, answers, holdout_fraction),
    ``[rashomon]`` (samplers, n_models, epsilons, criterion, reference, rc_max_samples) with
    ``[rashomon.dropout]`` (kind, p_max, n_p) and ``[rashomon.awp]`` (direction, step_size,
    max_steps, batch_size, refine). Unknown keys and bad values raise
    :class:`~modelsteal.errors.InvalidParameterError` naming the key.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidParameterError(f"No multiplicity config at {path}.")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InvalidParameterError(f"{path} is not valid TOML: {exc}.") from None
    return parse_config(raw, source=path.name)


# ---------------------------------------------------------------------------------------------
# Running a study
# ---------------------------------------------------------------------------------------------


@dataclass
class SeedRun:
    """What one seed of a study produced (models are not kept: only their numbers)."""

    seed: int
    target_accuracy: float
    base_fidelity: float
    base_accuracy: float
    n_eval: int
    n_queries: int
    timings: dict[str, float]
    rows: list[dict[str, Any]]
    model_rows: list[dict[str, Any]]
    rc_samples: dict[str, np.ndarray]


@dataclass
class MultiplicityResult:
    """Every number of a study: ``rows`` (one per seed × sampler × ε) and per-model rows."""

    config: MultiplicityConfig
    runs: list[SeedRun]
    seconds: float

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [r for run in self.runs for r in run.rows]

    @property
    def model_rows(self) -> list[dict[str, Any]]:
        return [r for run in self.runs for r in run.model_rows]


def _child(seed: int, k: int) -> int:
    return int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


def load_task(config: MultiplicityConfig, *, data_dir: str | Path | None = None) -> DataBundle:
    """The task's data set as a bundle (SST-2 with the configured features)."""
    folder = data_dir if data_dir is not None else config.data.data_dir
    if config.task == "sst2":
        return load_sst2(
            data_dir=folder,
            features=config.data.features,
            vocabulary_size=config.data.vocabulary_size,
        )
    return load_dataset(config.task, data_dir=folder)


def _sensitive(config: MultiplicityConfig, splits: Splits) -> tuple[str, ...]:
    wanted = config.data.sensitive
    if wanted is None:
        return tuple(splits.sensitive_features)
    groups = splits.target_test.groups or {}
    missing = [s for s in wanted if s not in groups]
    if missing:
        raise InvalidParameterError(
            f"The 'data.sensitive' setting of multiplicity config {config.source} names "
            f"{missing[0]!r}, which task {config.task!r} does not provide. Its groups: "
            f"{', '.join(sorted(groups)) or '(none)'}."
        )
    return tuple(wanted)


def _sample(
    name: str,
    config: MultiplicityConfig,
    base: nn.Module,
    fit: tuple[np.ndarray, np.ndarray],
    hold: tuple[np.ndarray, np.ndarray],
    *,
    n_classes: int,
    seed: int,
) -> tuple[list[nn.Module], list[float]]:
    """Sampled models (without the base) and the ε each was drawn for (nan: not ε-specific)."""
    rs = config.rashomon
    n = rs.n_models
    if name == "retrain":
        sur = config.surrogate
        models = sample_retrained(
            *fit,
            arch=sur.arch,
            params=sur.params,
            config=sur.train_config(),
            n_models=n,
            seed=seed,
            n_classes=n_classes,
        )
        return models, [math.nan] * n
    if name == "dropout":
        d = rs.dropout
        ps = np.linspace(d.p_max / d.n_p, d.p_max, d.n_p)
        per_p = math.ceil(n / d.n_p)
        models = sample_dropout(base, p_values=ps, n_per_p=per_p, kind=d.kind, seed=seed)
        # keep n models, spread over every p (round-robin over the draws)
        order = [i * per_p + j for j in range(per_p) for i in range(d.n_p)][:n]
        return [models[k] for k in sorted(order)], [math.nan] * n
    a = rs.awp
    eps = [e for e in rs.epsilons if e > 0] or [max(rs.epsilons)]
    models, drawn = [], []
    for k, e in enumerate(eps):
        count = n // len(eps) + (k < n % len(eps))
        if count == 0:
            continue
        samples = sample_awp(
            base,
            *hold,
            epsilon=e,
            n_models=count,
            seed=_child(seed, k),
            direction=a.direction,
            step_size=a.step_size,
            max_steps=a.max_steps,
            batch_size=a.batch_size,
            refine=a.refine,
        )
        models += [s.model for s in samples]
        drawn += [e] * count
    return models, drawn


def _fairness(
    y: np.ndarray,
    scores: np.ndarray,
    groups: Mapping[str, np.ndarray],
    sensitive: Sequence[str],
    min_group_size: int,
) -> dict[str, dict[str, np.ndarray]]:
    return {
        attr: fairness_values(y, scores, groups[attr], min_group_size=min_group_size)
        for attr in sensitive
    }


def run_seed(
    config: MultiplicityConfig,
    bundle: DataBundle,
    seed: int,
    *,
    progress: Callable[[str], None] | None = None,
) -> SeedRun:
    """One seed of the study (steps 1–5 of the module docstring)."""
    say = progress or (lambda msg: log.info("%s", msg))
    cfg_d, cfg_a, rs = config.data, config.attack, config.rashomon
    splits = split_bundle(
        bundle,
        seed=seed,
        pool_fraction=cfg_d.pool_fraction,
        test_fraction=cfg_d.test_fraction,
        max_train=cfg_d.max_train,
    )
    sensitive = _sensitive(config, splits)
    rng = np.random.default_rng(_child(seed, 0))
    test = splits.target_test
    if cfg_d.max_eval is not None and len(test) > cfg_d.max_eval:
        test = test.take(np.sort(rng.choice(len(test), cfg_d.max_eval, replace=False)))
    X_eval, y_eval = test.X, test.y
    groups = test.groups or {}
    # Rashomon capacity costs O(iterations · n · m · C): it is computed on a seeded subsample.
    rc_rows = np.arange(len(y_eval))
    if len(rc_rows) > rs.rc_max_samples:
        rc_rows = np.sort(rng.choice(len(rc_rows), rs.rc_max_samples, replace=False))

    say(
        f"seed {seed}: training the target ({config.target.arch}) "
        f"on {len(splits.target_train)} rows"
    )
    tgt = config.target
    target_model = build_model(
        tgt.arch, splits.input_shape, splits.n_classes, seed=seed, **dict(tgt.params)
    )
    train_model(
        target_model,
        splits.target_train.X,
        splits.target_train.y,
        config=tgt.train_config(),
        seed=seed,
    )
    target_scores = predict_proba(target_model, X_eval)
    target_pred = target_scores.argmax(axis=1)

    pool = splits.attacker_pool.X
    if cfg_a.budget > len(pool):
        raise InvalidParameterError(
            f"The 'attack.budget' setting of multiplicity config {config.source} asks for "
            f"{cfg_a.budget} queries but the attacker pool of {config.task!r} holds {len(pool)} "
            "rows. Lower the budget or raise data.pool_fraction."
        )
    api = budgeted(TorchTarget(target_model, input_shape=splits.input_shape), cfg_a.budget)
    if cfg_a.answers == "labels":
        api = label_only(api)
    X_q = pool[np.sort(rng.choice(len(pool), cfg_a.budget, replace=False))]
    Y_q = api.query(X_q)
    order = rng.permutation(len(X_q))
    n_hold = max(1, round(cfg_a.holdout_fraction * len(X_q)))
    hold_idx, fit_idx = order[:n_hold], order[n_hold:]
    fit = (X_q[fit_idx], Y_q[fit_idx])
    hold = (X_q[hold_idx], Y_q[hold_idx])

    sur = config.surrogate
    say(
        f"seed {seed}: stealing with {cfg_a.budget} queries ({len(fit_idx)} fit, {n_hold} held out)"
    )
    t0 = time.perf_counter()
    base = build_model(
        sur.arch, splits.input_shape, splits.n_classes, seed=_child(seed, 1), **dict(sur.params)
    )
    train_model(base, *fit, config=sur.train_config(), seed=_child(seed, 2))
    timings = {"base": time.perf_counter() - t0}
    base_scores = predict_proba(base, X_eval)
    base_pred = base_scores.argmax(axis=1)

    target_fair = _fairness(y_eval, target_scores, groups, sensitive, cfg_d.min_group_size)
    rows, model_rows, rc_samples = [], [], {}
    for k, name in enumerate(rs.samplers):
        say(f"seed {seed}: sampling {rs.n_models} models by {name}")
        t0 = time.perf_counter()
        sampled, drawn = _sample(
            name, config, base, fit, hold, n_classes=splits.n_classes, seed=_child(seed, 10 + k)
        )
        timings[name] = time.perf_counter() - t0
        pool_models = [base, *sampled]
        scores = stack_scores(pool_models, X_eval)  # (m, n, C)
        decisions = scores.argmax(axis=2)
        fidelity = (decisions == target_pred[None]).mean(axis=1)
        acc = (decisions == y_eval[None]).mean(axis=1)
        fair = _fairness(y_eval, scores, groups, sensitive, cfg_d.min_group_size)
        kept_by, values_by = {}, {}
        for crit in rs.criterion:
            for eps in rs.epsilons:
                kept, values_by[crit] = rashomon_set(
                    pool_models,
                    *hold,
                    epsilon=eps,
                    criterion=crit,
                    baseline=0 if rs.reference == "base" else None,
                )
                kept_by[crit, eps] = set(kept.tolist())
        for j in range(len(pool_models)):
            model_rows.append(
                {
                    "seed": seed,
                    "sampler": name,
                    "model": j,
                    "is_base": j == 0,
                    "drawn_for_eps": math.nan if j == 0 else drawn[j - 1],
                    **{f"heldout_{c}": float(v[j]) for c, v in values_by.items()},
                    **{
                        f"in_set_from_eps_{c}": min(
                            (e for e in rs.epsilons if j in kept_by[c, e]), default=math.nan
                        )
                        for c in rs.criterion
                    },
                    "fidelity": float(fidelity[j]),
                    "accuracy": float(acc[j]),
                    **{
                        f"{attr}.{SHORT.get(m, m)}": float(v[j])
                        for attr, vals in fair.items()
                        for m, v in vals.items()
                    },
                }
            )
        cache: dict[tuple[int, ...], dict[str, Any]] = {}
        for crit in rs.criterion:
            for eps in rs.epsilons:
                kept = np.asarray(sorted(kept_by[crit, eps]), dtype=np.int64)
                key = tuple(kept.tolist())
                if key not in cache:  # the set often stays the same across several ε
                    cache[key] = _set_row(
                        scores[kept],
                        fidelity[kept],
                        acc[kept],
                        base_pred,
                        target_pred,
                        {a: {m: v[kept] for m, v in vals.items()} for a, vals in fair.items()},
                        target_fair,
                        rc_rows=rc_rows,
                    )
                row = dict(cache[key])
                rc = row.pop("_rc")
                if crit == rs.criterion[0] and eps == rs.epsilons[-1]:
                    rc_samples[name] = rc
                rows.append(
                    {
                        "task": config.task,
                        "seed": seed,
                        "sampler": name,
                        "criterion": crit,
                        "epsilon": eps,
                        "n_sampled": len(pool_models),
                        **row,
                    }
                )
    return SeedRun(
        seed=seed,
        target_accuracy=accuracy(y_eval, target_scores),
        base_fidelity=float((base_pred == target_pred).mean()),
        base_accuracy=float((base_pred == y_eval).mean()),
        n_eval=len(y_eval),
        n_queries=cfg_a.budget,
        timings=timings,
        rows=rows,
        model_rows=model_rows,
        rc_samples=rc_samples,
    )


def _set_row(
    scores: np.ndarray,
    fidelity: np.ndarray,
    acc: np.ndarray,
    base_pred: np.ndarray,
    target_pred: np.ndarray,
    fair: Mapping[str, Mapping[str, np.ndarray]],
    target_fair: Mapping[str, Mapping[str, np.ndarray]],
    *,
    rc_rows: np.ndarray,
) -> dict[str, Any]:
    m = scores.shape[0]
    rc = np.ones(len(rc_rows)) if m == 1 else rashomon_capacity(scores[:, rc_rows])
    rcs = summarise(rc)
    row: dict[str, Any] = {
        "set_size": m,
        "fidelity_min": float(fidelity.min()),
        "fidelity_max": float(fidelity.max()),
        "fidelity_range": float(fidelity.max() - fidelity.min()),
        "accuracy_min": float(acc.min()),
        "accuracy_max": float(acc.max()),
        "ambiguity_base": ambiguity(scores, base_pred),
        "discrepancy_base": discrepancy(scores, base_pred),
        "ambiguity_target": ambiguity(scores, target_pred),
        "discrepancy_target": discrepancy(scores, target_pred),
        "disagreement_mean": float(disagreement(scores).mean()),
        "vpr_mean": float(viable_prediction_range(scores, target_pred).mean()),
        **{f"rc_{k}": v for k, v in rcs.items()},
        "_rc": rc,
    }
    for attr, vals in fair.items():
        summary = spread_summary(vals, {k: v[0] for k, v in target_fair[attr].items()})
        for metric in FAIRNESS_METRICS:
            s = summary[metric]
            short = f"{attr}.{SHORT[metric]}"
            row.update(
                {
                    f"{short}.target": s["target"],
                    f"{short}.min": s["min"],
                    f"{short}.max": s["max"],
                    f"{short}.std": s["std"],
                }
            )
        for metric, s in summary.items():
            if metric.startswith("accuracy["):
                row[f"{attr}.{metric}.min"] = s["min"]
                row[f"{attr}.{metric}.max"] = s["max"]
                row[f"{attr}.{metric}.target"] = s["target"]
    return row


def run_multiplicity(
    config: MultiplicityConfig,
    *,
    data_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> MultiplicityResult:
    """Run every seed of ``config``; ``data_dir`` overrides ``data.data_dir``."""
    started = time.perf_counter()
    bundle = load_task(config, data_dir=data_dir)
    runs = [run_seed(config, bundle, s, progress=progress) for s in config.seeds]
    return MultiplicityResult(config=config, runs=runs, seconds=time.perf_counter() - started)
