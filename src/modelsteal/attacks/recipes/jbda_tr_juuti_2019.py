"""JBDA-TR: targeted-random I-FGSM synthesis, "T-RND" (Juuti et al., PRADA, EuroS&P 2019).

https://arxiv.org/abs/1805.02628

As JBDA, but each augmented point moves towards a random class t ≠ ŷ(x) by ``n_iter`` targeted
FGSM steps of size α inside an ℓ∞ ball of radius ε (see :mod:`modelsteal.attacks.synthetic`).
Tang et al. 2024 (ModelGuard) use it as one of their two query methods, with 1,000 seed images,
combined with every attack strategy on the returned posteriors: hence ``hard_labels=False`` by
default here.

Departures and unverified choices: PRADA's ε, α and round schedule were not checked against the
paper; the defaults (ε=0.1, α=0.01, 8 iterations) come from the targeted ``jbtop{k}`` code of
Orekondy et al.'s prediction-poisoning repository, and the rounds are JBDA's (doubling, then
reservoir sampling of κ points after σ rounds). ``seed_size`` defaults to JBDA's 150 rather than
ModelGuard's 1,000, to suit small data sets.
"""

from __future__ import annotations

from typing import Any

from modelsteal.attacks._extract import Recipe
from modelsteal.attacks.recipes import RECIPES
from modelsteal.attacks.recovery import identity, top1
from modelsteal.attacks.synthetic import JBDATR
from modelsteal.attacks.training import substitute_trainer


@RECIPES.register("jbda_tr_juuti_2019")
@RECIPES.register("jbda_tr")
def build(
    *,
    seed_size: int = 150,
    epsilon: float = 0.1,
    step_size: float = 0.01,
    n_iter: int = 8,
    reservoir_after: int = 3,
    reservoir_size: int = 400,
    substitute: str = "auto",
    substitute_params: dict[str, Any] | None = None,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    min_steps: int = 500,
    hard_labels: bool = False,
) -> Recipe:
    """JBDA-TR; ``seed_size`` rows are drawn at random from the pool as the seed set."""
    strategy = JBDATR(
        seed_size=seed_size,
        epsilon=epsilon,
        step_size=step_size,
        n_iter=n_iter,
        reservoir_after=reservoir_after,
        reservoir_size=reservoir_size,
    )
    return Recipe(
        name="jbda_tr_juuti_2019",
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
        paper="https://arxiv.org/abs/1805.02628",
        rounds=strategy.rounds,  # retrain after every augmentation round
    )
