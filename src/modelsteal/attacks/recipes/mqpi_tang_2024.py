"""m queries per image, m-QPI (Tang et al. 2024, ModelGuard, §4.4 and Table 6).

https://arxiv.org/abs/2210.11473

The attacker asks every input ``m`` times and trains on the average of the answers. Against a
deterministic defense this changes nothing; against an inconsistent one (non-ordered incremental
quantization, whose answer to the same clean row can change as centroids are added) the repeats
leak information. ``ExtractionResult.info`` holds ``mqpi_changed`` (inputs whose answers differed
across the repeats), ``mqpi_changed_index`` and ``mqpi_first`` (the 1-QPI answers).

Departure: the paper's second pass starts after the whole query set has been asked once; here the
repeats follow each query batch (``query_batch_size`` inputs), so the set of changed answers can
be smaller. Pass the whole set as one batch for the paper's order (the benchmark does).
"""

from __future__ import annotations

from typing import Any

from modelsteal.attacks._extract import Recipe
from modelsteal.attacks.adaptive import RepeatQuerier, pool_strategy
from modelsteal.attacks.recipes import RECIPES
from modelsteal.attacks.recovery import identity
from modelsteal.attacks.training import substitute_trainer


@RECIPES.register("mqpi_tang_2024")
@RECIPES.register("mqpi")
def build(
    *,
    m: int = 2,
    strategy: str = "random",
    strategy_params: dict[str, Any] | None = None,
    substitute: str = "auto",
    substitute_params: dict[str, Any] | None = None,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    min_steps: int = 500,
    query_batch_size: int = 256,
) -> Recipe:
    """m-QPI: every input asked ``m`` times (``m`` rows of the budget), answers averaged."""
    querier = RepeatQuerier(m=m)
    chosen, rounds = pool_strategy(strategy, strategy_params, cost=querier.cost)
    return Recipe(
        name="mqpi_tang_2024",
        strategy=chosen,
        recovery=identity(),
        trainer=substitute_trainer(
            substitute=substitute,
            substitute_params=substitute_params,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            min_steps=min_steps,
        ),
        querier=querier,
        rounds=rounds,
        query_batch_size=query_batch_size,
        paper="https://arxiv.org/abs/2210.11473",
    )
