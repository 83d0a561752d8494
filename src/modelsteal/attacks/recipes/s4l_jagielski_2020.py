"""S4L attack (Jagielski et al., USENIX Security 2020), as run by Tang et al. 2024 (ModelGuard).

https://arxiv.org/abs/1909.01838

Random-pool queries (KnockoffNets) by default; the substitute is trained with soft cross-entropy on
the returned vectors plus ``rotation_weight`` × the 4-rotation self-supervised loss on the queried
images (the reference: weight 1.0), through a rotation head that shares the substitute's body. See
:class:`modelsteal.attacks.adaptive.S4LTrainer`.

Departures: the rotation loss uses the queried images only (no extra unlabelled set), like the
ModelGuard scripts. Inputs that are not square (C, H, W) images get no rotation loss (the
substitute is trained plainly), so on flat inputs this recipe is the naive attack.
"""

from __future__ import annotations

from typing import Any

from modelsteal.attacks._extract import Recipe
from modelsteal.attacks.adaptive import S4LTrainer, pool_strategy
from modelsteal.attacks.recipes import RECIPES
from modelsteal.attacks.recovery import identity
from modelsteal.attacks.training import substitute_trainer


@RECIPES.register("s4l_jagielski_2020")
@RECIPES.register("s4l")
def build(
    *,
    rotation_weight: float = 1.0,
    strategy: str = "random",
    strategy_params: dict[str, Any] | None = None,
    substitute: str = "auto",
    substitute_params: dict[str, Any] | None = None,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    min_steps: int = 500,
) -> Recipe:
    """S4L: soft cross-entropy + ``rotation_weight`` × rotation loss on the queried images."""
    chosen, rounds = pool_strategy(strategy, strategy_params)
    return Recipe(
        name="s4l_jagielski_2020",
        strategy=chosen,
        recovery=identity(),
        trainer=substitute_trainer(
            substitute=substitute,
            substitute_params=substitute_params,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            min_steps=min_steps,
            cls=S4LTrainer,
            weight=rotation_weight,
        ),
        rounds=rounds,
        paper="https://arxiv.org/abs/1909.01838",
    )
