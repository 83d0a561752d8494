"""ActiveThief (Pal, Gupta, Shukla, Kanade, Shevade, Ganapathy, AAAI 2020), with the extensions
of Psathas (TU Delft 2022): cluster seeding, more selection strategies, an entropy stopping rule.

https://arxiv.org/abs/1905.09165

The attacker holds an unlabelled natural pool. An initial seed (random, or k-means clusters) is
queried; the substitute is trained from the same initial weights on everything labelled so far
(``Recipe.rounds``); the strategy scores the unused pool with the substitute's softmax and picks
the next ``k`` rows by ``selection`` (see :mod:`modelsteal.attacks.activethief`); repeat until the
budget is spent. Rounds are ``initial_seed, initial_seed + k, …, budget``; by default the seed is
10% of the budget and the rest is spent in ten rounds (MET's "values from the paper").

Departures from the paper: no validation split labelled by the target (the substitute trains for
a fixed number of steps instead of early stopping on validation F1); the substitute is the
project's default architecture for the input shape. With ``alpha`` set, the entropy stopping rule
(thesis Eq. 4) ends the run when it fires and records the queries in
``info["activethief"]["stop_at"]``.
"""

from __future__ import annotations

from typing import Any

from modelsteal.attacks._extract import Recipe
from modelsteal.attacks.activethief import ActiveThief
from modelsteal.attacks.recipes import RECIPES
from modelsteal.attacks.recovery import identity, top1
from modelsteal.attacks.training import substitute_trainer


@RECIPES.register("activethief_pal_2020")
@RECIPES.register("activethief")
def build(
    *,
    selection: str = "kcenter",
    seeding: str = "random",
    initial_seed: int | None = None,
    k: int | None = None,
    iterations: int = 10,
    n_clusters: int = 10,
    candidates: int = 10,
    alpha: float | None = None,
    substitute: str = "auto",
    substitute_params: dict[str, Any] | None = None,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    min_steps: int = 500,
    hard_labels: bool = False,
) -> Recipe:
    """ActiveThief by ``selection`` and ``seeding``; ``initial_seed``/``k`` None: from the budget.

    ``iterations`` is the number of selection rounds when ``k`` is derived from the budget.
    ``hard_labels=True`` trains on the argmax of each answer only.
    """
    strategy = ActiveThief(
        selection=selection,
        seeding=seeding,
        initial_seed=initial_seed,
        k=k,
        n_clusters=n_clusters,
        candidates=candidates,
        alpha=alpha,
    )

    def rounds(budget: int) -> list[int]:
        return strategy.rounds(budget, iterations=iterations)

    return Recipe(
        name="activethief_pal_2020",
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
        paper="https://arxiv.org/abs/1905.09165",
        rounds=rounds,
    )
