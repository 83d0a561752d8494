"""KnockoffNets, random strategy (Orekondy, Schiele, Fritz, CVPR 2019).

https://arxiv.org/abs/1812.02766

The attacker samples natural images uniformly from its own pool, queries the target, and trains a
substitute on the returned posteriors with soft cross-entropy. With a label-only target the
returned rows are one-hot, which makes the same loss ordinary cross-entropy on hard labels.

``strategy`` re-points the same training at another registered query strategy's inputs (e.g.
``"jbda_tr"``): the naive attack on those queries, as the ModelGuard comparison combines them.

Departures from the paper: the substitute is trained from scratch (the paper fine-tunes an
ImageNet-pretrained network), because the project's targets are small and no weights are
downloaded at run time.
"""

from __future__ import annotations

from typing import Any

from modelsteal.attacks._extract import Recipe
from modelsteal.attacks.adaptive import pool_strategy
from modelsteal.attacks.recipes import RECIPES
from modelsteal.attacks.recovery import identity, top1
from modelsteal.attacks.training import substitute_trainer


@RECIPES.register("knockoff_orekondy_2019")
@RECIPES.register("knockoff")
def build(
    *,
    substitute: str = "auto",
    substitute_params: dict[str, Any] | None = None,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    min_steps: int = 500,
    hard_labels: bool = False,
    strategy: str = "random",
    strategy_params: dict[str, Any] | None = None,
) -> Recipe:
    """KnockoffNets-random. ``hard_labels=True`` trains on the argmax of each answer only."""
    chosen, rounds = pool_strategy(strategy, strategy_params)
    return Recipe(
        name="knockoff_orekondy_2019",
        strategy=chosen,
        rounds=rounds,
        recovery=top1() if hard_labels else identity(),
        trainer=substitute_trainer(
            substitute=substitute,
            substitute_params=substitute_params,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            min_steps=min_steps,
        ),
        paper="https://arxiv.org/abs/1812.02766",
    )
