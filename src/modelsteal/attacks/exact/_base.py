"""The result type every exact-extraction attack returns, its registry and shared helpers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelsteal._checks import check_int
from modelsteal._registry import Registry
from modelsteal.errors import InvalidParameterError
from modelsteal.targets import BudgetedTarget, Target, budgeted


@dataclass(frozen=True)
class ExactResult:
    """What an exact-extraction attack recovered.

    ``params`` holds the recovered parameters as plain numpy arrays (or nested dicts of them);
    ``model`` is a :class:`~modelsteal.targets.Target` that answers like the recovered model;
    ``queries`` is the exact number of rows the attack asked the target (queries and explanations
    alike), counted by the :func:`~modelsteal.targets.budgeted` wrapper the attack put around it;
    ``budget`` is the cap it ran under. ``info`` carries method-specific facts (leaves found,
    breakpoints, rounds...).
    """

    name: str
    params: dict[str, Any]
    model: Target
    queries: int
    budget: int
    info: dict[str, Any] = field(default_factory=dict)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Top-1 labels of the recovered model on ``x``."""
        return self.model.query(x).argmax(axis=1)


ExactAttack = Callable[..., ExactResult]
EXACT_ATTACKS: Registry[ExactAttack] = Registry("exact attack")


def wrap_budget(target: Any, budget: int | None, *, default: int, owner: str) -> BudgetedTarget:
    """The budgeted wrapper an attack spends every query through (``budget=None``: ``default``)."""
    if not isinstance(target, Target):
        raise InvalidParameterError(
            f"{owner} attacks a Target (n_classes, input_shape, query). "
            f"Got {type(target).__name__} instead."
        )
    if budget is None:
        budget = default
    budget = check_int(budget, name="budget", owner=owner, low=1)
    return budgeted(target, budget)


def n_features(target: Target) -> int:
    return int(np.prod(target.input_shape))


def log_odds(probs: np.ndarray, *, ref: int = 0) -> np.ndarray:
    """``log p_k - log p_ref`` for every class (the softmax logits up to a shift), float64."""
    p = np.asarray(probs, dtype=np.float64)
    with np.errstate(divide="ignore"):
        logp = np.log(p)
    return logp - logp[:, [ref]]


def check_domain(
    domain: Any, d: int, *, owner: str, default: tuple[float, float] = (-1.0, 1.0)
) -> tuple[np.ndarray, np.ndarray]:
    """``domain`` as per-feature (low, high) float64 arrays of length ``d``.

    Accepts None (``default`` for every feature), a pair of floats, or a pair of arrays.
    """
    if domain is None:
        domain = default
    try:
        lo, hi = domain
        lo = np.broadcast_to(np.asarray(lo, dtype=np.float64), (d,)).copy()
        hi = np.broadcast_to(np.asarray(hi, dtype=np.float64), (d,)).copy()
    except (TypeError, ValueError):
        raise InvalidParameterError(
            f"The 'domain' parameter of {owner} must be a (low, high) pair of floats or of "
            f"length-{d} arrays. Got {domain!r} instead."
        ) from None
    if not (np.isfinite(lo).all() and np.isfinite(hi).all() and (hi > lo).all()):
        raise InvalidParameterError(
            f"The 'domain' parameter of {owner} must have finite low < high for every feature. "
            f"Got {domain!r} instead."
        )
    return lo, hi
