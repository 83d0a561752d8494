"""Smoothing attack (Lukas, Zhang, Kerschbaum, 2022), as run by Tang et al. 2024 (ModelGuard).

https://arxiv.org/abs/1912.00888 (Lukas et al.); https://arxiv.org/abs/2210.11473 (Tang et al.)

Each pool input is asked as ``views`` augmented views (the reference scripts: 3) and the returned
posteriors are averaged before training, which smooths out input-independent noise.

Departures: every view is a query and is counted against the budget (the reference scripts count
unique images only, so at an equal nominal budget they ask 3× as many rows). Augmentations are
small random shifts plus Gaussian noise for images and Gaussian noise for flat inputs (the
reference uses random affine transforms); the first view is the input itself.
"""

from __future__ import annotations

from typing import Any

from modelsteal.attacks._extract import Recipe
from modelsteal.attacks.adaptive import SmoothingQuerier, pool_strategy
from modelsteal.attacks.recipes import RECIPES
from modelsteal.attacks.recovery import identity
from modelsteal.attacks.training import substitute_trainer


@RECIPES.register("smoothing_lukas_2022")
@RECIPES.register("smoothing")
def build(
    *,
    views: int = 3,
    max_shift: int = 2,
    noise: float = 0.03,
    strategy: str = "random",
    strategy_params: dict[str, Any] | None = None,
    substitute: str = "auto",
    substitute_params: dict[str, Any] | None = None,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    min_steps: int = 500,
) -> Recipe:
    """Smoothing: ``views`` views per input (each one a counted query), answers averaged."""
    querier = SmoothingQuerier(views=views, max_shift=max_shift, noise=noise)
    chosen, rounds = pool_strategy(strategy, strategy_params, cost=querier.cost)
    return Recipe(
        name="smoothing_lukas_2022",
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
        paper="https://arxiv.org/abs/1912.00888",
    )
