"""KnockoffNets, adaptive strategy (Orekondy, Schiele, Fritz, CVPR 2019, §4.2).

https://arxiv.org/abs/1812.02766

A gradient bandit over groups of the attacker's pool (k-means clusters, or the attacker's coarse
labels) picks where the next queries come from, rewarded by the certainty, diversity and loss of
the answers (see :mod:`modelsteal.attacks.adaptive_knockoff`). The substitute is trained with soft
cross-entropy on the returned posteriors, as in the random strategy, and retrained every
``retrain_every`` queries so that the loss reward compares the target with a recent copy.

Departures from the paper: rows are queried in pulls of ``pull_size`` (one bandit step each, π held
fixed within a pull) rather than one at a time; the hierarchy has one or two levels (groups,
optionally k-means clusters within each, then pool rows drawn uniformly); the substitute is
retrained from scratch at each round rather than updated online, and is trained from scratch rather
than fine-tuned from ImageNet weights.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from modelsteal._checks import check_int
from modelsteal.attacks._extract import Recipe
from modelsteal.attacks.adaptive_knockoff import KnockoffAdaptive
from modelsteal.attacks.recipes import RECIPES
from modelsteal.attacks.recovery import identity, top1
from modelsteal.attacks.training import substitute_trainer


def every(budget: int, step: int) -> list[int]:
    """Query counts ``step, 2·step, …`` below ``budget``: the retraining rounds.

    >>> every(1000, 300)
    [300, 600, 900]
    """
    return list(range(step, budget, step))


@RECIPES.register("knockoff_adaptive_orekondy_2019")
@RECIPES.register("knockoff_adaptive")
def build(
    *,
    n_clusters: int = 10,
    coarse_labels: Any = None,
    fine_clusters: int = 0,
    reward: str = "all",
    alpha: float = 0.05,
    pull_size: int = 32,
    diversity_window: int = 256,
    retrain_every: int | None = 500,
    substitute: str = "auto",
    substitute_params: dict[str, Any] | None = None,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    min_steps: int = 500,
    hard_labels: bool = False,
) -> Recipe:
    """KnockoffNets-adaptive. ``alpha`` is the bandit's step size (``lr`` is the substitute's).

    ``retrain_every=None`` trains the substitute only at the evaluation schedule's points (enough
    for the certainty and diversity rewards, which do not use it).
    """
    strategy = KnockoffAdaptive(
        n_clusters=n_clusters,
        coarse_labels=coarse_labels,
        fine_clusters=fine_clusters,
        reward=reward,
        alpha=alpha,
        pull_size=pull_size,
        diversity_window=diversity_window,
    )
    rounds = None
    if retrain_every is not None:
        step = check_int(retrain_every, name="retrain_every", owner="knockoff_adaptive", low=1)
        rounds = partial(every, step=step)
    return Recipe(
        name="knockoff_adaptive_orekondy_2019",
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
        paper="https://arxiv.org/abs/1812.02766",
        # One bandit step per propose() call: each pull's answers are in before the next draw.
        query_batch_size=strategy.pull_size,
        rounds=rounds,
    )
