"""Assisted learning (Xian, Wang, Ding, Ghanadan 2020) and the modules its imitations target.

Alice and Bob hold different feature columns of the same records (rows aligned by a shared ID).
Alice wants to predict a label ``y`` that only she holds, without seeing Bob's data or model.

Stage I (learning), round ``j = 1..k``:
    Alice fits her learner to the current residual (``y − ȳ`` in round 1) on her columns and
    sends her fitted residual ``e_{A,j}`` to Bob; Bob fits his learner to ``e_{A,j}`` on his
    columns and sends his fitted residual ``e_{B,j}`` back.
Stage II (prediction):
    for a new record, each side sums its ``k`` models over the rounds and Alice adds the two sums:
    ``f(x) = ȳ + Σ_j f_{A,j}(x_A) + Σ_j f_{B,j}(x_B)``.

With least-squares learners this is back-fitting: it converges to the least-squares fit on all
columns (the *oracle* that pools both sides' data). With regression trees it is gradient boosting
whose rounds alternate between the two sides' columns. ``learning_rate`` (default 1, as in the
paper) shrinks every fitted model before its residual is sent, as in gradient boosting. As there,
Alice starts from the training mean of ``y`` (a constant model she holds); with the default
learning rate and learners that fit a constant (least squares with intercept, trees) this changes
nothing, and with shrinkage it spares the first rounds from re-learning the mean.

:class:`Module` is Definition 2 of "Imitation Privacy" (Xian, Wang, Hong, Ding, Ghanadan): an
algorithm with its data, answering Stage I queries (fitted values for a label vector) and Stage II
queries (predictions of the model fitted to that label vector at new feature rows).
:func:`module_privacy` measures ρ between a module and an imitation over a set of tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LinearRegression
from sklearn.tree import DecisionTreeRegressor

from modelsteal._checks import check_choice, check_float, check_int
from modelsteal.errors import InputValidationError, InvalidParameterError
from modelsteal.privacy.imitation import multi_task_privacy

logger = logging.getLogger(__name__)

LEARNERS = ("linear", "tree", "stump")
#: Depth of the ``"tree"`` learner; pass a ``DecisionTreeRegressor`` for another depth.
TREE_DEPTH = 3


def make_learner(learner: str | Any, *, seed: int | None = 0, owner: str = "make_learner") -> Any:
    """A fresh, unfitted scikit-learn regressor from a name or an estimator.

    Names: ``"linear"`` (``LinearRegression()``, with intercept), ``"tree"``
    (``DecisionTreeRegressor(max_depth=3)``), ``"stump"`` (``DecisionTreeRegressor(max_depth=1)``,
    a tree with two leaves). An estimator is cloned (never fitted in place); its ``random_state``
    is set to ``seed`` when it has one left at ``None``.
    """
    if isinstance(learner, str):
        if learner == "linear":
            return LinearRegression()
        if learner in ("tree", "stump"):
            depth = TREE_DEPTH if learner == "tree" else 1
            return DecisionTreeRegressor(max_depth=depth, random_state=seed)
    elif hasattr(learner, "fit") and hasattr(learner, "predict") and hasattr(learner, "get_params"):
        est = clone(learner)
        if "random_state" in est.get_params() and est.get_params()["random_state"] is None:
            est.set_params(random_state=seed)
        return est
    raise InvalidParameterError(
        f"The 'learner' parameter of {owner} must be one of "
        + ", ".join(repr(n) for n in LEARNERS)
        + f" or a scikit-learn regressor (with fit, predict and get_params). Got {learner!r} "
        "instead."
    )


def _as_numeric(x: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise InputValidationError(f"{name} could not be read as an array ({exc}).") from None
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise InputValidationError(
            f"{name} must be numeric. Got an array of dtype {arr.dtype} instead."
        )
    return arr.astype(np.float64, copy=False)


def check_features(x: Any, *, name: str, n_rows: int | None = None) -> np.ndarray:
    """Validate one side's feature block: a finite (n, p) array with n, p >= 1; float64 out."""
    arr = _as_numeric(x, name)
    if arr.ndim != 2:
        hint = " One feature column must be passed as x.reshape(-1, 1)." if arr.ndim == 1 else ""
        raise InputValidationError(
            f"{name} must be a 2-D (n, p) array of features. Got shape {arr.shape} instead.{hint}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputValidationError(
            f"{name} must have at least one row and one column. Got shape {arr.shape} instead."
        )
    if n_rows is not None and arr.shape[0] != n_rows:
        raise InputValidationError(
            f"{name} has {arr.shape[0]} rows but y has {n_rows}: both sides must hold the same "
            "records, in the same order (align them by their shared ID first)."
        )
    if not np.all(np.isfinite(arr)):
        rows = np.flatnonzero(~np.isfinite(arr).all(axis=1))
        raise InputValidationError(
            f"{name} must be finite; rows {rows[:10].tolist()} contain NaN or inf. Impute or drop "
            "them on both sides."
        )
    return arr


def check_labels(y: Any, *, name: str = "y", n_rows: int | None = None) -> np.ndarray:
    """Validate a label vector: a finite (n,) array; float64 out."""
    arr = _as_numeric(y, name)
    if arr.ndim != 1:
        hint = " Pass y.ravel() for a single (n, 1) column." if arr.ndim == 2 else ""
        raise InputValidationError(
            f"{name} must be a 1-D (n,) label vector. Got shape {arr.shape} instead.{hint}"
        )
    if arr.shape[0] == 0:
        raise InputValidationError(f"{name} is empty; give at least one label.")
    if n_rows is not None and arr.shape[0] != n_rows:
        raise InputValidationError(
            f"{name} has {arr.shape[0]} entries but the data have {n_rows} rows: one label per "
            "record is needed."
        )
    if not np.all(np.isfinite(arr)):
        bad = np.flatnonzero(~np.isfinite(arr))
        raise InputValidationError(
            f"{name} must be finite; entries {bad[:10].tolist()} are NaN or inf."
        )
    return arr


def _seeds(seed: int | np.random.Generator, count: int) -> list[int]:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer | np.random.Generator):
        raise InvalidParameterError(
            f"The 'seed' parameter must be an int or a numpy Generator. Got {seed!r} instead."
        )
    rng = np.random.default_rng(seed)
    return [int(s) for s in rng.integers(0, 2**31 - 1, size=count)]


def _check_rounds_arg(rounds: int | None, fitted: int, owner: str) -> int:
    if rounds is None:
        return fitted
    return check_int(rounds, name="rounds", owner=owner, low=1, high=fitted)


class SingleParty:
    """One party fitting its learner to its own residuals for ``rounds`` rounds (boosting).

    The reference points of assisted learning: *Alice alone* (her columns only) and the *oracle*
    (every column in one place). With ``learner="linear"`` one round is already the least-squares
    fit and later rounds add zero models.

    Parameters are stored by ``__init__``; :meth:`fit` sets ``init_`` (the training mean the
    rounds start from), ``models_`` and ``train_mse_``.
    """

    def __init__(
        self,
        learner: str | Any = "linear",
        *,
        rounds: int = 1,
        learning_rate: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.learner = learner
        self.rounds = rounds
        self.learning_rate = learning_rate
        self.seed = seed

    def fit(self, x: Any, y: Any) -> SingleParty:
        rounds = check_int(self.rounds, name="rounds", owner="SingleParty", low=1)
        lr = check_float(
            self.learning_rate,
            name="learning_rate",
            owner="SingleParty",
            low=0.0,
            high=1.0,
            low_open=True,
        )
        y = check_labels(y)
        x = check_features(x, name="x", n_rows=len(y))
        make_learner(self.learner, owner="SingleParty")  # validate the learner before fitting
        self.init_ = float(y.mean())
        self.learning_rate_ = lr
        residual = y - self.init_
        self.models_: list[Any] = []
        self.train_mse_: list[float] = []
        for s in _seeds(self.seed, rounds):
            model = make_learner(self.learner, seed=s, owner="SingleParty").fit(x, residual)
            residual = residual - lr * model.predict(x)
            self.models_.append(model)
            self.train_mse_.append(float(np.mean(residual**2)))
        self.n_features_in_ = x.shape[1]
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "models_"):
            raise InvalidParameterError("This SingleParty is not fitted yet; call fit(x, y) first.")

    def staged_predict(self, x: Any) -> Iterator[np.ndarray]:
        """Predictions after rounds 1, 2, ..., ``rounds``."""
        self._check_fitted()
        x = check_features(x, name="x")
        if x.shape[1] != self.n_features_in_:
            raise InputValidationError(
                f"x has {x.shape[1]} columns but the model was fitted on {self.n_features_in_}."
            )
        total = np.full(len(x), self.init_)
        for model in self.models_:
            total = total + self.learning_rate_ * model.predict(x)
            yield total.copy()

    def predict(self, x: Any, *, rounds: int | None = None) -> np.ndarray:
        """Prediction from the first ``rounds`` rounds (default: all)."""
        self._check_fitted()
        k = _check_rounds_arg(rounds, len(self.models_), "SingleParty.predict")
        for j, out in enumerate(self.staged_predict(x), start=1):
            if j == k:
                return out
        raise AssertionError("unreachable")  # pragma: no cover


class AssistedLearning:
    """Two-party assisted learning: Stage I residual exchange, Stage II summed prediction.

    Parameters
    ----------
    alice_learner, bob_learner
        A name from :data:`LEARNERS` or a scikit-learn regressor (cloned for every round).
    rounds
        ``k``, the number of Stage I rounds (each: Alice fits, then Bob fits), ``k >= 1``.
    learning_rate
        Shrinkage in ``(0, 1]`` applied to every fitted model (1 = the paper's protocol).
    seed
        Seeds every learner's ``random_state`` (one draw per fit).

    After :meth:`fit`: ``init_`` (the training mean of ``y``, Alice's starting point),
    ``alice_models_`` and ``bob_models_`` (``k`` fitted models each; in a real
    deployment each list stays on its owner's side), ``messages_`` (the residual vectors exchanged,
    in order: ``e_{A,1}, e_{B,1}, e_{A,2}, ...``) and ``train_mse_`` (training MSE after each
    round).
    """

    def __init__(
        self,
        alice_learner: str | Any = "linear",
        bob_learner: str | Any = "linear",
        *,
        rounds: int = 5,
        learning_rate: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.alice_learner = alice_learner
        self.bob_learner = bob_learner
        self.rounds = rounds
        self.learning_rate = learning_rate
        self.seed = seed

    def fit(self, x_alice: Any, x_bob: Any, y: Any) -> AssistedLearning:
        owner = "AssistedLearning"
        rounds = check_int(self.rounds, name="rounds", owner=owner, low=1)
        lr = check_float(
            self.learning_rate, name="learning_rate", owner=owner, low=0.0, high=1.0, low_open=True
        )
        y = check_labels(y)
        xa = check_features(x_alice, name="x_alice", n_rows=len(y))
        xb = check_features(x_bob, name="x_bob", n_rows=len(y))
        make_learner(self.alice_learner, owner=owner)
        make_learner(self.bob_learner, owner=owner)
        seeds = _seeds(self.seed, 2 * rounds)
        self.alice_models_: list[Any] = []
        self.bob_models_: list[Any] = []
        self.messages_: list[np.ndarray] = []
        self.train_mse_: list[float] = []
        self.init_ = float(y.mean())  # Alice's constant model, as in gradient boosting
        self.learning_rate_ = lr
        residual = y - self.init_
        for j in range(rounds):
            fa = make_learner(self.alice_learner, seed=seeds[2 * j], owner=owner).fit(xa, residual)
            residual = residual - lr * fa.predict(xa)  # e_{A,j}: sent to Bob
            self.messages_.append(residual.copy())
            fb = make_learner(self.bob_learner, seed=seeds[2 * j + 1], owner=owner)
            fb.fit(xb, residual)
            residual = residual - lr * fb.predict(xb)  # e_{B,j}: sent back to Alice
            self.messages_.append(residual.copy())
            self.alice_models_.append(fa)
            self.bob_models_.append(fb)
            self.train_mse_.append(float(np.mean(residual**2)))
            logger.debug("assisted round %d: train MSE %.6g", j + 1, self.train_mse_[-1])
        self.n_features_alice_, self.n_features_bob_ = xa.shape[1], xb.shape[1]
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "alice_models_"):
            raise InvalidParameterError(
                "This AssistedLearning is not fitted yet; call fit(x_alice, x_bob, y) first."
            )

    def _inputs(self, x_alice: Any, x_bob: Any) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        xa = check_features(x_alice, name="x_alice")
        xb = check_features(x_bob, name="x_bob", n_rows=len(xa))
        for name, arr, p in (
            ("x_alice", xa, self.n_features_alice_),
            ("x_bob", xb, self.n_features_bob_),
        ):
            if arr.shape[1] != p:
                raise InputValidationError(
                    f"{name} has {arr.shape[1]} columns but the model was fitted on {p}."
                )
        return xa, xb

    def staged_predict(self, x_alice: Any, x_bob: Any) -> Iterator[np.ndarray]:
        """Stage II predictions using the models of rounds ``1..j``, for ``j = 1..k``."""
        xa, xb = self._inputs(x_alice, x_bob)
        total = np.full(len(xa), self.init_)
        for fa, fb in zip(self.alice_models_, self.bob_models_, strict=True):
            total = total + self.learning_rate_ * (fa.predict(xa) + fb.predict(xb))
            yield total.copy()

    def predict(self, x_alice: Any, x_bob: Any, *, rounds: int | None = None) -> np.ndarray:
        """Stage II: ``init_ + Σ_{j≤rounds} f_{A,j}(x_A) + f_{B,j}(x_B)`` (default: all rounds)."""
        self._check_fitted()
        k = _check_rounds_arg(rounds, len(self.alice_models_), "AssistedLearning.predict")
        for j, out in enumerate(self.staged_predict(x_alice, x_bob), start=1):
            if j == k:
                return out
        raise AssertionError("unreachable")  # pragma: no cover


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a - b) ** 2))


def assisted_curve(
    x_alice: Any,
    x_bob: Any,
    y: Any,
    x_alice_test: Any,
    x_bob_test: Any,
    y_test: Any,
    *,
    learner: str | Any = "linear",
    rounds: int = 5,
    learning_rate: float = 1.0,
    seed: int = 0,
) -> list[dict[str, float]]:
    """Test MSE of assisted learning after ``k = 1..rounds`` rounds, beside its reference points.

    One row per ``k``: ``assisted`` (both sides, ``k`` rounds: ``2k`` fitted models),
    ``alice_alone`` (Alice's learner boosted on her columns only) and ``oracle`` (the same learner
    boosted on all columns in one place), both with ``2k`` fitted models so that every column of
    a row has had the same number of fits (for ``"linear"`` both are plain least-squares fits),
    and ``baseline`` (predicting the training mean). Errors are mean squared errors on the test
    rows; ``train_mse`` is assisted learning's training error after round ``k``.
    """
    rounds = check_int(rounds, name="rounds", owner="assisted_curve", low=1)
    y = check_labels(y)
    y_test = check_labels(y_test, name="y_test")
    xa = check_features(x_alice, name="x_alice", n_rows=len(y))
    xb = check_features(x_bob, name="x_bob", n_rows=len(y))
    xa_t = check_features(x_alice_test, name="x_alice_test", n_rows=len(y_test))
    xb_t = check_features(x_bob_test, name="x_bob_test", n_rows=len(y_test))
    kw = {"learning_rate": learning_rate, "seed": seed}
    assisted = AssistedLearning(learner, learner, rounds=rounds, **kw).fit(xa, xb, y)
    alone = SingleParty(learner, rounds=2 * rounds, **kw).fit(xa, y)
    oracle = SingleParty(learner, rounds=2 * rounds, **kw).fit(np.hstack([xa, xb]), y)
    alone_preds = list(alone.staged_predict(xa_t))
    oracle_preds = list(oracle.staged_predict(np.hstack([xa_t, xb_t])))
    baseline = _mse(np.full(len(y_test), y.mean()), y_test)
    rows = []
    for k, pa in enumerate(assisted.staged_predict(xa_t, xb_t), start=1):
        rows.append(
            {
                "k": k,
                "assisted": _mse(pa, y_test),
                "alice_alone": _mse(alone_preds[2 * k - 1], y_test),
                "oracle": _mse(oracle_preds[2 * k - 1], y_test),
                "baseline": baseline,
                "train_mse": assisted.train_mse_[k - 1],
            }
        )
    return rows


def make_vertical_task(
    n: int = 1000,
    *,
    p_alice: int = 5,
    p_bob: int = 5,
    kind: str = "linear",
    interaction: float = 0.0,
    correlation: float = 0.3,
    noise: float = 1.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A synthetic vertically split regression task: ``(x_alice, x_bob, y)``.

    Features are standard normal with correlation ``correlation`` between every pair of columns
    (so Alice's columns carry part of Bob's signal). ``kind="linear"``: signal ``x β`` with
    ``β ~ N(0, I)`` drawn from ``seed``. ``kind="nonlinear"``: the additive signal
    ``Σ_{Alice} sin(2 x_j) + Σ_{Bob} (|x_j| − E|x_j|)``. Either way ``interaction`` adds
    ``interaction · x_{A,1} x_{B,1}``, a cross-party term that no sum ``f_A(x_A) + f_B(x_B)``
    (what assisted learning can represent) captures, and ``y = signal + noise · ε``.
    """
    owner = "make_vertical_task"
    n = check_int(n, name="n", owner=owner, low=1)
    p_alice = check_int(p_alice, name="p_alice", owner=owner, low=1)
    p_bob = check_int(p_bob, name="p_bob", owner=owner, low=1)
    kind = check_choice(kind, name="kind", owner=owner, choices=("linear", "nonlinear"))
    interaction = check_float(interaction, name="interaction", owner=owner)
    correlation = check_float(
        correlation, name="correlation", owner=owner, low=0.0, high=1.0, high_open=True
    )
    noise = check_float(noise, name="noise", owner=owner, low=0.0)
    rng = np.random.default_rng(check_int(seed, name="seed", owner=owner, low=0))
    p = p_alice + p_bob
    common = rng.standard_normal((n, 1))
    x = np.sqrt(1 - correlation) * rng.standard_normal((n, p)) + np.sqrt(correlation) * common
    xa, xb = x[:, :p_alice], x[:, p_alice:]
    if kind == "linear":
        signal = x @ rng.standard_normal(p)
    else:
        signal = np.sin(2 * xa).sum(axis=1) + (np.abs(xb) - np.sqrt(2 / np.pi)).sum(axis=1)
    signal = signal + interaction * xa[:, 0] * xb[:, 0]
    return xa, xb, signal + noise * rng.standard_normal(n)


# --------------------------------------------------------------------------- modules and ρ


@dataclass
class StageAnswer:
    """A module's answer to one Stage I query (a label vector ``y``).

    ``fitted`` is the Stage I answer ``f_{M,y}(X)`` on the module's own rows (the protocol sends
    the residual ``y − fitted``; the sender knows ``y``, so the two carry the same information).
    :meth:`predict` answers Stage II queries ``f_{M,y}(x)`` at new rows and counts them.
    """

    fitted: np.ndarray
    model: Any = field(repr=False)
    stage2_queries: int = 0

    def predict(self, x: Any) -> np.ndarray:
        x = check_features(x, name="x")
        self.stage2_queries += len(x)
        return np.asarray(self.model.predict(x), dtype=np.float64)


class Module:
    """Definition 2: a module ``M = (A, X)``, an algorithm with its private data.

    ``query(y)`` fits the learner to ``(X, y)`` and returns a :class:`StageAnswer` (a Stage I
    answer, and Stage II access to the fitted model). ``predict(y, x)`` is ``f_{M,y}(x)``.
    ``stage1_queries`` counts the label vectors answered.
    """

    def __init__(self, x: Any, learner: str | Any = "linear", *, seed: int = 0) -> None:
        self.x = check_features(x, name="x")
        make_learner(learner, owner="Module")
        self.learner = learner
        self.seed = seed
        self.stage1_queries = 0

    @property
    def n_rows(self) -> int:
        return int(self.x.shape[0])

    def query(self, y: Any) -> StageAnswer:
        y = check_labels(y, n_rows=self.n_rows)
        model = make_learner(self.learner, seed=self.seed, owner="Module").fit(self.x, y)
        self.stage1_queries += 1
        return StageAnswer(fitted=np.asarray(model.predict(self.x), dtype=np.float64), model=model)

    def predict(self, y: Any, x: Any) -> np.ndarray:
        """``f_{M,y}(x)``: the module's prediction at rows ``x`` after learning label ``y``."""
        return self.query(y).predict(x)


class Imitation(Protocol):
    """Anything that, given a label vector, predicts at new rows: ``f_{I,y}(x)``."""

    def predict(self, y: np.ndarray, x: np.ndarray) -> np.ndarray: ...


class ZeroImitation:
    """The trivial imitation ``f_I ≡ 0`` (``ρ = 1`` for the scaled squared loss)."""

    def predict(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.zeros(len(np.asarray(x)))


def module_privacy(
    module: Imitation,
    imitation: Imitation,
    *,
    tasks: Sequence[np.ndarray],
    x_future: Any,
    x_future_imitation: Any | None = None,
    n_boot: int = 500,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """``ρ_{I,M}`` (Definition 4) over the label vectors ``tasks``, on future rows ``x_future``.

    Both the module and the imitation learn every task ``y`` and predict at the future rows (the
    imitation at ``x_future_imitation`` when its features differ from the module's, e.g. only the
    columns released to it); the regression loss of :func:`multi_task_privacy` averages over
    tasks, with a bootstrap interval over rows and tasks.
    """
    if len(tasks) == 0:
        raise InvalidParameterError("module_privacy needs at least one task (label vector).")
    x_future = check_features(x_future, name="x_future")
    x_imit = x_future if x_future_imitation is None else x_future_imitation
    module_outs = [module.predict(y, x_future) for y in tasks]
    imitation_outs = [imitation.predict(y, x_imit) for y in tasks]
    return multi_task_privacy(
        imitation_outs,
        module_outs,
        task="regression",
        n_boot=n_boot,
        confidence=confidence,
        seed=seed,
    )
