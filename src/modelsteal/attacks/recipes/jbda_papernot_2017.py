"""JBDA: Jacobian-based dataset augmentation (Papernot et al., AsiaCCS 2017).

https://arxiv.org/abs/1602.02697

The attacker holds a small natural seed set (150 MNIST test images in the paper), drawn here from
the pool given to :func:`~modelsteal.attacks.extract`. Each round it labels the current set with
the target, retrains the substitute from scratch on everything so far, and adds one Jacobian step
``x + λ_ρ·sign(∇ₓ f̂_{ŷ(x)}(x))`` per point (see :mod:`modelsteal.attacks.synthetic`). The
substitute is retrained after every round (``Recipe.rounds``); rounds follow
:func:`~modelsteal.attacks.synthetic.jbda_rounds` and the last one is truncated to the budget.

The paper trains on the oracle's labels: ``hard_labels=True`` by default. Departures from the
paper: the number of rounds follows from the budget rather than being fixed (ρ_max = 6), and the
substitute architecture is the project's default for the input shape.
"""

from __future__ import annotations

from typing import Any

from modelsteal.attacks._extract import Recipe
from modelsteal.attacks.recipes import RECIPES
from modelsteal.attacks.recovery import identity, top1
from modelsteal.attacks.synthetic import JBDA
from modelsteal.attacks.training import substitute_trainer


@RECIPES.register("jbda_papernot_2017")
@RECIPES.register("jbda")
def build(
    *,
    seed_size: int = 150,
    step_size: float = 0.1,
    period: int = 3,
    reservoir_after: int = 3,
    reservoir_size: int = 400,
    substitute: str = "auto",
    substitute_params: dict[str, Any] | None = None,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    min_steps: int = 500,
    hard_labels: bool = True,
) -> Recipe:
    """JBDA with the paper's constants (λ=0.1, τ=3, σ=3, κ=400, 150 seeds) as defaults.

    ``seed_size`` rows are drawn at random from the pool as the seed set; the pool must hold at
    least that many. ``hard_labels=False`` trains on the returned vectors as they are.
    """
    strategy = JBDA(
        seed_size=seed_size,
        step_size=step_size,
        period=period,
        reservoir_after=reservoir_after,
        reservoir_size=reservoir_size,
    )
    return Recipe(
        name="jbda_papernot_2017",
        strategy=strategy,
        recovery=top1() if hard_labels else identity(),
        trainer=substitute_trainer(
            substitute=substitute,
            substitute_params=substitute_params,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            min_steps=min_steps,
        ),
        paper="https://arxiv.org/abs/1602.02697",
        rounds=strategy.rounds,  # retrain after every augmentation round
    )
