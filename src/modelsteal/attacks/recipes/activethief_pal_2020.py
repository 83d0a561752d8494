"""ActiveThief (Pal, Gupta, Shukla, Kanade, Shevade, Ganapathy, AAAI 2020), with the extensions
of Psathas (TU Delft 2022): cluster seeding, more selection strategies, an entropy stopping rule.

https://arxiv.org/abs/1905.09165

The attacker holds an unlabelled natural pool. An initial seed (random, or k-means clusters) is
queried; the substitute is trained from the same initial weights on everything labelled so far
(``Recipe.rounds``); the strategy scores the unused pool with the substitute's softmax and picks
the next ``k`` rows by ``selection`` (see :mod:`modelsteal.attacks.activethief`); repeat until the
budget is spent. Rounds are ``initial_seed, initial_seed + k, …, budget``; by default the seed is
10% of the budget and the rest is spent in ten rounds (MET's "values from the paper").

``validation`` (the original's practice; off by default): rows of the initial seed drawn at
random, labelled by the target through the same budget, never trained on and never selected
again; each round's training stops ``patience`` epochs after the best agreement with the
target's labels on them and keeps the best epoch's weights. ``warm_start=True`` trains each round
from the previous round's substitute instead of the same initial weights (the original).
From the CLI: ``--param validation=0.2 --param warm_start=true``.

Departures from the paper: the validation split is taken out of the initial seed (the original
asks it on top), so that the round ends stay where they are; early stopping measures agreement
with the target's labels (ties: lower soft cross-entropy) where the original uses F1, and gives
up after ``patience`` epochs (default 5) of at most ``epochs`` (the original: 20 evaluations, at
most 1,000 epochs); without a validation split (the default) every round trains for the fixed
number of epochs. The substitute is the project's default architecture for the input shape.
With ``alpha`` set, the entropy stopping rule (thesis Eq. 4) ends the run when it fires and
records the queries in ``info["activethief"]["stop_at"]``. ``info["activethief"]`` also holds
``validation_rows`` and, per round, ``training`` (rows, best epoch, warm start).
"""

from __future__ import annotations

from typing import Any

from modelsteal.attacks._extract import Recipe
from modelsteal.attacks.activethief import ActiveThief, ActiveThiefTrainer
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
    validation: int | float = 0,
    patience: int | None = 5,
    warm_start: bool = False,
    dfal_classes: int | None = 3,
    dfal_exhaustive: bool = False,
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
    ``validation``: rows (int) or share of the initial seed (float in [0, 1)) held out for early
    stopping with ``patience``; 0 disables. ``warm_start``: retrain each round from the previous
    substitute. ``dfal_classes``: DeepFool's candidate classes per step, by logit (default 3;
    None: all); ``dfal_exhaustive``: run DeepFool on every unlabelled row (see
    :class:`ActiveThief`).
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
        validation=validation,
        dfal_classes=dfal_classes,
        dfal_exhaustive=dfal_exhaustive,
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
            cls=ActiveThiefTrainer,
            warm_start=warm_start,
            patience=patience,
        ),
        paper="https://arxiv.org/abs/1905.09165",
        rounds=rounds,
    )
