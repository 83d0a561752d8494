"""Query strategies, registered by name."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modelsteal.attacks._base import STRATEGIES, AttackState, Proposal
from modelsteal.errors import InvalidParameterError


@STRATEGIES.register("random")
@dataclass(frozen=True)
class RandomPool:
    """KnockoffNets' random strategy: uniform draws without replacement from the unused pool."""

    name: str = "random"

    def max_queries(self, state: AttackState) -> int:
        """Each pool row is asked at most once."""
        return len(state.pool)

    def propose(self, state: AttackState, n: int, rng: np.random.Generator) -> Proposal:
        unused = state.unused
        if n > len(unused):
            raise InvalidParameterError(
                f"The attacker pool has {len(unused)} unused rows but {n} queries were asked "
                f"for (pool size {len(state.pool)}). Lower the budget or give a larger pool."
            )
        picked = rng.choice(unused, size=n, replace=False)
        return Proposal(x=state.pool[picked], pool_index=picked)
