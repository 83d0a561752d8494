"""ρ against the imitator's budget and side information: model class, data distribution, both.

"Imitation Privacy" (Xian, Wang, Hong, Ding, Ghanadan) separates what an imitator learns by
querying (the query set ``X̃`` and the answers ``ỹ``) from its *side information* ``S``, anything
"not obtained from interacting with the ML Server"; its examples include the module's learning
algorithm and the distribution of its training data, and it expects more side information to
give a closer imitation. This module measures that: for a fixed module, ρ (Definition 4, with
:mod:`modelsteal.privacy.imitation`) of imitations built with a given number of queries under
four levels of side information, a 2 × 2 grid (:data:`LEVELS`):

- ``"both"``: the model class is known (the imitator trains the module's own class) and so is
  the data distribution (queries are drawn from it);
- ``"class only"``: the class is known, the distribution is not (queries are uniform over the
  input domain);
- ``"distribution only"``: the distribution is known, the class is not (the imitator trains a
  different class);
- ``"neither"``: a different class on uniform queries.

Two tasks:

``"digits"`` (classification, 0-1 loss: ρ = 1 − fidelity on future data)
    The module is the registry MLP (``build_model("mlp")``, hidden layers 256 and 128) trained
    for 30 epochs on the target_train part of ``load_splits("digits", seed=0,
    pool_fraction=0.7)`` (404 rows), behind a label-only API that counts queries
    (``budgeted(label_only(TorchTarget(...)), budget)``). Known distribution: queries are rows of
    the attacker pool (944 rows, drawn without replacement); unknown: uniform points in the data's
    domain ``[0, 1]^64``. Known class: the same MLP architecture trained from scratch on the
    answers (at least 30 epochs and 300 optimiser steps). Unknown class: 5-nearest neighbours
    on the answers. Future data: the target_test part (449 rows).
``"linear"`` (regression, scaled squared error ``Σ|f_I − f_M|² / Σ|f_M|²``)
    The module is least squares through the origin fitted on 200 rows of ``N(0, Σ)`` in ``p``
    dimensions (``Σ_ij = s_i s_j 0.5^|i−j|`` with standard deviations ``s`` geometrically spaced
    from 0.5 to 2) to labels ``y = X β + ε`` (``β ~ N(0, I)``, unit noise), a
    :class:`~modelsteal.privacy.assisted.Module` answering Stage II queries (counted). Known
    distribution: queries from ``N(0, Σ)``; unknown: uniform on the box ``[-3, 3]^p``. Known
    class: least squares through the origin on the answers (minimum-norm below ``p`` queries).
    Unknown class: 5-nearest-neighbour regression. Future data: 2,000 fresh rows of ``N(0, Σ)``.
    With the class known, ``p`` queries in general position determine the module exactly, from
    either distribution (ρ = 0): the prediction-API counterpart of Example 3, where ``p`` Stage I
    queries reveal ``span(X_B)`` to an imitator who knows that Bob uses linear regression.

Why a label-only API for digits: both imitators then receive the same information, and
k-nearest neighbours, a classifier, has no use for probabilities that the MLP could exploit.
Why k-nearest neighbours for the unknown class: it has no architecture or training settings to
guess, it is deterministic given the queries, and its inductive bias (local majority or average)
differs from both modules' global parametric form, so it cannot reproduce either one exactly.

Randomness. The module is fixed (seed 0). For every seed ``r`` and distribution one ordered query
sequence is drawn and the imitation at budget ``b`` uses its first ``b`` rows, so curves are
nested in the budget and the two classes at the same distribution see the same queries (a
paired comparison); the MLP's initialisation and shuffling are seeded from ``(seed, r, b)``.
``rho`` is the mean of the per-seed ρ over ``seeds`` imitations; ``low``/``high`` is the
percentile-bootstrap interval of that mean from
:func:`~modelsteal.privacy.imitation.multi_task_privacy` with one entry per seed, which resamples
the future rows and the seeds together (so it covers both the finite future set and the spread
between imitations); ``rho_sd`` is the standard deviation over seeds. ``privacy`` holds
``P(ρ ≤ ε)`` with its Wilson interval (:func:`~modelsteal.privacy.imitation.privacy_probability`)
over the seeds, for each ``ε``: the (ε, δ) estimate of Definition 4's extension.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.linear_model import LinearRegression
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

from modelsteal._checks import check_choice, check_float, check_int
from modelsteal.errors import InvalidParameterError
from modelsteal.privacy.assisted import Module
from modelsteal.privacy.examples import _sizes
from modelsteal.privacy.imitation import imitation_loss, multi_task_privacy, privacy_probability

logger = logging.getLogger(__name__)

Row = dict[str, Any]

TASKS = ("digits", "linear")
#: Side-information levels: name → (model class known, data distribution known).
LEVELS: dict[str, tuple[bool, bool]] = {
    "both": (True, True),
    "class only": (True, False),
    "distribution only": (False, True),
    "neither": (False, False),
}
#: Neighbours of the unknown-class imitator (fewer when the budget is smaller).
KNN_NEIGHBORS = 5
#: Default budgets of the digits task (its attacker pool holds 944 rows).
DIGITS_BUDGETS = (25, 50, 100, 200, 400, 800)
#: Settings of the digits task: the split, the module's training, the MLP imitator's training.
DIGITS_POOL_FRACTION = 0.7
DIGITS_MODULE_EPOCHS = 30
IMITATOR_MIN_EPOCHS = 30
IMITATOR_MIN_STEPS = 300
#: Settings of the linear task: module rows, future rows, the uninformed box, the default p.
LINEAR_ROWS = 200
LINEAR_FUTURE = 2000
LINEAR_BOX = 3.0
LINEAR_P = 10

_OWNER = "side_information_curve"
_TASK_CODE = {"digits": 1, "linear": 2}


def _check_epsilons(epsilons: Sequence[float]) -> tuple[float, ...]:
    if isinstance(epsilons, int | float | np.integer | np.floating):
        epsilons = (epsilons,)
    try:
        values = tuple(epsilons)
    except TypeError:
        raise InvalidParameterError(
            f"The 'epsilons' parameter of {_OWNER} must be a sequence of floats >= 0. Got "
            f"{epsilons!r} instead."
        ) from None
    if not values:
        raise InvalidParameterError(
            f"The 'epsilons' parameter of {_OWNER} must hold at least one value. Got {epsilons!r}."
        )
    return tuple(check_float(e, name="epsilons", owner=_OWNER, low=0.0) for e in values)


def _knn_k(budget: int) -> int:
    return min(KNN_NEIGHBORS, budget)


def _derived_seed(*keys: int) -> int:
    """A torch/scikit-learn seed for one imitation, from the keys that identify it."""
    return int(np.random.default_rng([int(k) for k in keys]).integers(0, 2**31 - 1))


# --------------------------------------------------------------------------- digits


class _DigitsSetting:
    """The digits module, its future rows and the two query distributions."""

    def __init__(self, largest: int) -> None:
        from modelsteal.data import load_splits
        from modelsteal.models import TrainConfig, build_model, predict_proba, train_model
        from modelsteal.targets import TorchTarget

        splits = load_splits("digits", seed=0, pool_fraction=DIGITS_POOL_FRACTION)
        pool = len(splits.attacker_pool)
        if largest > pool:
            raise InvalidParameterError(
                f"The 'budgets' parameter of {_OWNER} must be ints in [1, {pool}] for "
                f"task='digits' (queries from the data distribution are rows of its {pool}-row "
                f"attacker pool). Got {largest} instead."
            )
        model = build_model("mlp", splits.input_shape, splits.n_classes, seed=0)
        train_model(
            model,
            splits.target_train.X,
            splits.target_train.y,
            config=TrainConfig(epochs=DIGITS_MODULE_EPOCHS),
            seed=0,
        )
        self.splits = splits
        self.target = TorchTarget(model, input_shape=splits.input_shape)
        self.x_future = splits.target_test.X
        # The evaluator's view of the module on future data (not an imitator's query).
        self.module_out = predict_proba(model, self.x_future).argmax(axis=1)
        self.module_score = float(np.mean(self.module_out == splits.target_test.y))
        self.pool = splits.attacker_pool.X
        lo, hi = splits.domain if splits.domain is not None else (0.0, 1.0)
        self.domain = (float(lo), float(hi))

    def queries(self, known: bool, count: int, rng: np.random.Generator) -> np.ndarray:
        if known:
            return self.pool[rng.permutation(len(self.pool))[:count]]
        shape = (count, *self.splits.input_shape)
        return rng.uniform(*self.domain, size=shape).astype(np.float32)

    def describe(self, known: bool) -> str:
        if known:
            return f"attacker pool ({len(self.pool)} rows)"
        lo, hi = self.domain
        return f"uniform on [{lo:g}, {hi:g}]^{math.prod(self.splits.input_shape)}"

    def imitate(self, x: np.ndarray, class_known: bool, init_seed: int) -> tuple[np.ndarray, int]:
        """Ask the label-only API about ``x`` and fit an imitator; its future labels, queries."""
        from modelsteal.models import TrainConfig, build_model, predict_proba, train_model
        from modelsteal.targets import budgeted, label_only

        api = budgeted(label_only(self.target), len(x))
        labels = api.query(x).argmax(axis=1)
        if class_known:
            steps_per_epoch = math.ceil(len(x) / TrainConfig().batch_size)
            epochs = max(IMITATOR_MIN_EPOCHS, math.ceil(IMITATOR_MIN_STEPS / steps_per_epoch))
            model = build_model(
                "mlp", self.splits.input_shape, self.splits.n_classes, seed=init_seed
            )
            train_model(model, x, labels, config=TrainConfig(epochs=epochs), seed=init_seed)
            out = predict_proba(model, self.x_future).argmax(axis=1)
        else:
            knn = KNeighborsClassifier(n_neighbors=_knn_k(len(x))).fit(x, labels)
            out = knn.predict(self.x_future)
        return out, api.spent


# --------------------------------------------------------------------------- linear


def _ols() -> LinearRegression:
    return LinearRegression(fit_intercept=False)


class _LinearSetting:
    """The least-squares module on correlated Gaussian features, and its query distributions."""

    def __init__(self, p: int) -> None:
        rng = np.random.default_rng([0, _TASK_CODE["linear"]])
        stds = np.geomspace(0.5, 2.0, p)
        lags = np.abs(np.subtract.outer(np.arange(p), np.arange(p)))
        self.cov = np.outer(stds, stds) * 0.5**lags
        self.chol = np.linalg.cholesky(self.cov)
        self.p = p
        x = rng.standard_normal((LINEAR_ROWS, p)) @ self.chol.T
        beta = rng.standard_normal(p)
        self.y = x @ beta + rng.standard_normal(LINEAR_ROWS)
        self.module = Module(x, _ols())
        self.x_future = rng.standard_normal((LINEAR_FUTURE, p)) @ self.chol.T
        self.module_out = self.module.predict(self.y, self.x_future)
        y_future = self.x_future @ beta + rng.standard_normal(LINEAR_FUTURE)
        resid = np.sum((y_future - self.module_out) ** 2)
        # R² of the module against the noisy future labels.
        self.module_score = float(1.0 - resid / np.sum((y_future - y_future.mean()) ** 2))

    def queries(self, known: bool, count: int, rng: np.random.Generator) -> np.ndarray:
        if known:
            return rng.standard_normal((count, self.p)) @ self.chol.T
        return rng.uniform(-LINEAR_BOX, LINEAR_BOX, size=(count, self.p))

    def describe(self, known: bool) -> str:
        if known:
            return "N(0, Σ)"
        return f"uniform on [{-LINEAR_BOX:g}, {LINEAR_BOX:g}]^{self.p}"

    def imitate(self, x: np.ndarray, class_known: bool, init_seed: int) -> tuple[np.ndarray, int]:
        """Stage II queries to the module at ``x``, an imitator fitted to the answers."""
        answer = self.module.query(self.y)
        values = answer.predict(x)
        if class_known:
            # scikit-learn solves with lstsq: the minimum-norm fit below p queries.
            out = _ols().fit(x, values).predict(self.x_future)
        else:
            knn = KNeighborsRegressor(n_neighbors=_knn_k(len(x))).fit(x, values)
            out = knn.predict(self.x_future)
        return out, answer.stage2_queries


# --------------------------------------------------------------------------- the curve


def side_information_curve(
    task: str = "digits",
    budgets: Sequence[int] | None = None,
    *,
    seeds: int = 5,
    epsilons: Sequence[float] = (0.01, 0.05, 0.1, 0.25),
    p: int | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[Row]:
    """ρ of imitations for every side-information level and budget, over ``seeds`` imitations.

    ``task`` is ``"digits"`` or ``"linear"`` (see the module docstring for both set-ups).
    ``budgets`` are query counts (ints ≥ 1; default :data:`DIGITS_BUDGETS` for digits, and
    ``p // 2, p − 1, p, 2p, 5p, 20p, 100p`` for linear); digits budgets cannot exceed the 944
    rows of its attacker pool. ``seeds`` is the number of independent imitations per level and
    budget, seeded from ``seed``. ``p`` (linear only, default :data:`LINEAR_P`) is the number of
    features. ``n_boot`` and ``confidence`` set the bootstrap interval and the Wilson intervals.

    Returns one plain dict per level and budget (levels in the order of :data:`LEVELS`, budgets
    ascending): ``task``, ``level``, ``class_known``, ``distribution_known``, ``imitator``,
    ``queries_from``, ``budget``, ``queries`` (rows the module answered per imitation, counted
    by its API), ``seeds``, ``rho`` (mean over seeds), ``low`` and ``high`` (bootstrap interval
    over future rows and seeds), ``rho_sd``, ``rho_min``, ``rho_max``, ``rhos`` (one per seed),
    ``privacy`` (a list of ``{"epsilon", "p", "low", "high", "k", "r"}`` estimates of
    ``P(ρ ≤ ε)``) and ``module_score`` (the module's own test accuracy for digits, its R² on
    future rows for linear).
    """
    task = check_choice(task, name="task", owner=_OWNER, choices=TASKS)
    if task == "linear":
        p = check_int(LINEAR_P if p is None else p, name="p", owner=_OWNER, low=2)
        default = (p // 2, p - 1, p, 2 * p, 5 * p, 20 * p, 100 * p)
    elif p is not None:
        raise InvalidParameterError(
            f"The 'p' parameter of {_OWNER} applies to task='linear' only (digits has 64 "
            f"features). Got p={p!r} with task='digits'."
        )
    else:
        default = DIGITS_BUDGETS
    sizes = sorted(
        set(_sizes(default if budgets is None else budgets, name="budgets", owner=_OWNER, low=1))
    )
    seeds = check_int(seeds, name="seeds", owner=_OWNER, low=1)
    eps = _check_epsilons(epsilons)
    n_boot = check_int(n_boot, name="n_boot", owner=_OWNER, low=1)
    confidence = check_float(
        confidence,
        name="confidence",
        owner=_OWNER,
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
    )
    seed = check_int(seed, name="seed", owner=_OWNER, low=0)
    if task == "digits":
        setting: _DigitsSetting | _LinearSetting = _DigitsSetting(sizes[-1])
        kind = "classification"
    else:
        setting = _LinearSetting(p)
        kind = "regression"
    code = _TASK_CODE[task]
    largest = sizes[-1]
    # One ordered query sequence per (distribution, seed); budget b uses its first b rows.
    sequences = {
        (known, r): setting.queries(
            known, largest, np.random.default_rng([seed, code, int(known), r])
        )
        for known in (True, False)
        for r in range(seeds)
    }
    knn = f"{KNN_NEIGHBORS}-nearest neighbours"
    rows: list[Row] = []
    for level, (class_known, dist_known) in LEVELS.items():
        for b in sizes:
            outs, spent = [], []
            for r in range(seeds):
                x = sequences[(dist_known, r)][:b]
                out, asked = setting.imitate(x, class_known, _derived_seed(seed, code, r, b))
                outs.append(out)
                spent.append(asked)
            rhos = np.array(
                [float(np.mean(imitation_loss(o, setting.module_out, task=kind))) for o in outs]
            )
            est = multi_task_privacy(
                outs,
                [setting.module_out] * seeds,
                task=kind,
                n_boot=n_boot,
                confidence=confidence,
                seed=seed,
            )
            privacy = [
                {"epsilon": e, **privacy_probability(rhos, e, confidence=confidence)} for e in eps
            ]
            if task == "digits":
                imitator = "mlp (the module's architecture)" if class_known else knn
            else:
                imitator = "least squares" if class_known else knn
            rows.append(
                {
                    "task": task,
                    "level": level,
                    "class_known": class_known,
                    "distribution_known": dist_known,
                    "imitator": imitator,
                    "queries_from": setting.describe(dist_known),
                    "budget": b,
                    "queries": int(max(spent)),
                    "seeds": seeds,
                    "rho": est["rho"],
                    "low": est["low"],
                    "high": est["high"],
                    "rho_sd": float(rhos.std(ddof=1)) if seeds > 1 else 0.0,
                    "rho_min": float(rhos.min()),
                    "rho_max": float(rhos.max()),
                    "rhos": [float(v) for v in rhos],
                    "privacy": privacy,
                    "module_score": setting.module_score,
                }
            )
            logger.info("side information %s: %s, budget %d, rho=%.4g", task, level, b, est["rho"])
    return rows
