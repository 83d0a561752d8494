"""Wrappers that take a :class:`Target` and return a :class:`Target`.

Budgets, label-only access and logging compose in any order: ``budgeted(label_only(t), 1000)``.
Defenses (``modelsteal.defenses``) wrap the same way.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from modelsteal._checks import check_int
from modelsteal.errors import InvalidParameterError, QueryBudgetExceeded
from modelsteal.targets._base import OutputKind, Target, one_hot, output_kind


class _Wrapper:
    """Forwards the Target attributes to the wrapped target."""

    def __init__(self, target: Target) -> None:
        if not isinstance(target, Target):
            raise InvalidParameterError(
                f"{type(self).__name__} wraps a Target (n_classes, input_shape, query). "
                f"Got {type(target).__name__} instead."
            )
        self.target = target

    @property
    def n_classes(self) -> int:
        return self.target.n_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.target.input_shape)

    @property
    def output_kind(self) -> OutputKind:
        return output_kind(self.target)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r})"


class BudgetedTarget(_Wrapper):
    """Counts every row asked (queries and explanations alike) and refuses past ``budget``.

    A batch that would overshoot is refused whole, before it reaches the target, and nothing of it
    is counted: :class:`~modelsteal.errors.QueryBudgetExceeded` says how many rows remain. The
    count is kept under a lock, so concurrent callers can never spend more than the budget.
    """

    def __init__(self, target: Target, budget: int) -> None:
        super().__init__(target)
        self.budget = check_int(budget, name="budget", owner="BudgetedTarget", low=0)
        self._spent = 0
        self._lock = threading.Lock()

    @property
    def spent(self) -> int:
        return self._spent

    @property
    def remaining(self) -> int:
        return self.budget - self._spent

    def _reserve(self, n: int) -> None:
        with self._lock:
            if self._spent + n > self.budget:
                raise QueryBudgetExceeded(budget=self.budget, spent=self._spent, requested=n)
            self._spent += n

    def _release(self, n: int) -> None:
        with self._lock:
            self._spent -= n

    def _spend(self, x: np.ndarray, call):
        n = int(np.shape(x)[0]) if np.ndim(x) > 0 else 1
        self._reserve(n)
        try:
            return call(x)
        except Exception:
            # A batch the target refused (bad shape, NaN, an inner budget) was never answered.
            self._release(n)
            raise

    def query(self, x: np.ndarray) -> np.ndarray:
        return self._spend(x, self.target.query)

    def explain(self, x: np.ndarray) -> np.ndarray:
        if not hasattr(self.target, "explain"):
            raise InvalidParameterError(
                f"{self.target!r} does not answer explanations (it has no explain method)."
            )
        return self._spend(x, self.target.explain)


class LabelOnlyTarget(_Wrapper):
    """Returns only the top-1 label, as a one-hot row (ties go to the lowest class index)."""

    output_kind: OutputKind = "labels"  # type: ignore[assignment]

    def query(self, x: np.ndarray) -> np.ndarray:
        probs = self.target.query(x)
        return one_hot(probs.argmax(axis=1), self.n_classes)


class QueryLog:
    """Queries and responses kept in memory, in order, for later analysis."""

    def __init__(self) -> None:
        self._inputs: list[np.ndarray] = []
        self._responses: list[np.ndarray] = []
        self._lock = threading.Lock()

    def append(self, x: np.ndarray, y: np.ndarray) -> None:
        with self._lock:
            self._inputs.append(np.array(x, copy=True))
            self._responses.append(np.array(y, copy=True))

    def __len__(self) -> int:
        return sum(len(b) for b in self._inputs)

    @property
    def inputs(self) -> np.ndarray:
        return np.concatenate(self._inputs) if self._inputs else np.empty((0,))

    @property
    def responses(self) -> np.ndarray:
        return np.concatenate(self._responses) if self._responses else np.empty((0,))

    def save(self, path: str | Path) -> Path:
        """Write ``inputs`` and ``responses`` to an ``.npz`` file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, inputs=self.inputs, responses=self.responses)
        return path


class LoggedTarget(_Wrapper):
    """Keeps every answered query and its response in a :class:`QueryLog`."""

    def __init__(self, target: Target, log: QueryLog | None = None) -> None:
        super().__init__(target)
        self.log = log if log is not None else QueryLog()

    def query(self, x: np.ndarray) -> np.ndarray:
        y = self.target.query(x)
        self.log.append(np.asarray(x), y)
        return y


def budgeted(target: Target, budget: int) -> BudgetedTarget:
    """Wrap ``target`` so that at most ``budget`` rows can ever be asked."""
    return BudgetedTarget(target, budget)


def label_only(target: Target) -> LabelOnlyTarget:
    """Wrap ``target`` so that it answers one-hot top-1 labels only."""
    return LabelOnlyTarget(target)


def logged(target: Target, log: QueryLog | None = None) -> LoggedTarget:
    """Wrap ``target`` so that queries and responses are kept in ``log``."""
    return LoggedTarget(target, log)
