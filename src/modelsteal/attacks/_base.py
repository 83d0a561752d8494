"""The parts an attack is composed of, and the state they share.

An attack recipe = a query strategy (what to ask) + a recovery (what to make of the answers) + a
substitute trainer (how to fit the copy). :func:`modelsteal.attacks.extract` runs any recipe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from modelsteal._registry import Registry


@dataclass
class AttackState:
    """What the attacker knows so far. Strategies read it; only :func:`extract` writes it.

    ``pool`` is the attacker's unlabelled natural data (may be empty for synthetic strategies);
    ``used`` marks the pool rows already queried. ``substitute`` is the latest trained copy, or
    None before the first round.
    """

    pool: np.ndarray
    n_classes: int
    input_shape: tuple[int, ...]
    domain: tuple[float, float] | None = None
    used: np.ndarray = field(init=False)
    queried_x: list[np.ndarray] = field(default_factory=list)
    responses: list[np.ndarray] = field(default_factory=list)
    substitute: Any = None
    side_data: Any = None
    """The attacker's own small labelled set (an ArraySet), for recoveries that train shadow
    models; None when the attacker has none."""
    memo: dict[str, Any] = field(default_factory=dict)
    """Per-run scratch space for strategies (e.g. a reservoir draw that spans several proposals),
    so that strategies themselves keep no run state."""

    def __post_init__(self) -> None:
        self.used = np.zeros(len(self.pool), dtype=bool)

    @property
    def n_queried(self) -> int:
        return sum(len(b) for b in self.queried_x)

    @property
    def unused(self) -> np.ndarray:
        """Indices of pool rows not yet queried."""
        return np.flatnonzero(~self.used)

    def inputs(self) -> np.ndarray:
        return np.concatenate(self.queried_x)

    def answers(self) -> np.ndarray:
        return np.concatenate(self.responses)


@dataclass(frozen=True)
class Proposal:
    """Inputs a strategy wants to query; ``pool_index`` names their pool rows when they have any."""

    x: np.ndarray
    pool_index: np.ndarray | None = None


class QueryStrategy(Protocol):
    """Chooses the next ``n`` inputs to query."""

    name: str

    def propose(self, state: AttackState, n: int, rng: np.random.Generator) -> Proposal: ...

    # Optional: ``max_queries(state) -> int`` for strategies that can only ask so many (a pool
    # strategy never asks a row twice); extract() checks it before spending anything.


class Recovery(Protocol):
    """Maps returned vectors ŷ (and the inputs that produced them) to training targets ỹ.

    ``recover(returned, x)`` takes every answer so far, in query order, and returns rows on the
    simplex. Optional: ``prepare(state, rng)``, called once before the first substitute is
    trained, for recoveries that learn something first (shadow models, a lookup table); they may
    use ``state.side_data`` (the attacker's own small labelled set) and never the target.
    """

    def __call__(self, returned: np.ndarray, x: np.ndarray) -> np.ndarray: ...


class Querier(Protocol):
    """How an input is asked: once (plain), as several augmented views, or m times (m-QPI).

    ``cost`` is the number of budget rows one input spends; ``ask`` spends exactly
    ``cost * len(x)`` rows through ``oracle`` and returns one aggregated row per input.
    """

    cost: int

    def ask(
        self, oracle: Any, x: np.ndarray, state: AttackState, rng: np.random.Generator
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class PlainQuerier:
    """Each input is asked once."""

    cost: int = 1

    def ask(
        self, oracle: Any, x: np.ndarray, state: AttackState, rng: np.random.Generator
    ) -> np.ndarray:
        return oracle.query(x)


STRATEGIES: Registry[Callable[..., QueryStrategy]] = Registry("query strategy")
RECOVERIES: Registry[Callable[..., Recovery]] = Registry("recovery")
