"""Partial Bayes attack (Tang et al. 2024, ModelGuard, §3.4 Eq. 12–13 and 21, Appendix B.1).

https://arxiv.org/abs/2210.11473

Random-pool queries (KnockoffNets) by default; the returned vectors are recovered with a lookup
table of (clean, perturbed) pairs drawn from Dirichlet neighbourhoods (s = 8·C, K = 20 per query)
and perturbed by the known defense, matched in ℓ1 with τ = max(0.01, d_min) — the reference
scripts' settings. See :class:`modelsteal.attacks.bayes.PartialBayes`.

Departures: the neighbourhoods are centred on the returned vectors (``centre="returned"``), on a
naive substitute's predictions (``"substitute"``), on those of a substitute trained on the
answers' top-1 labels (``"substitute_top1"``), or on an equal mixture (a list of names); the
paper and its code centre them on the target's clean outputs, which an attacker does not have —
available here only as the labelled upper bound ``centre="oracle_clean"`` with ``clean=...``.
``refine`` adds re-centred rounds (not in the paper). Stateful defenses are simulated on a fresh
store.
"""

from __future__ import annotations

from typing import Any

from modelsteal.attacks._extract import Recipe
from modelsteal.attacks.adaptive import pool_strategy
from modelsteal.attacks.bayes import PartialBayes
from modelsteal.attacks.recipes import RECIPES
from modelsteal.attacks.training import substitute_trainer


@RECIPES.register("pbayes_tang_2024")
@RECIPES.register("pbayes")
def build(
    *,
    defense: str = "none",
    defense_params: dict[str, Any] | None = None,
    centre: str | tuple[str, ...] | list[str] = "returned",
    samples_per_query: int = 20,
    concentration: float = 8.0,
    tolerance: float = 0.01,
    norm: int | str = 1,
    refine: int = 0,
    clean: Any = None,
    strategy: str = "random",
    strategy_params: dict[str, Any] | None = None,
    substitute: str = "auto",
    substitute_params: dict[str, Any] | None = None,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    min_steps: int = 500,
) -> Recipe:
    """Partial Bayes against the known ``defense`` (registry name) with ``defense_params``."""
    chosen, rounds = pool_strategy(strategy, strategy_params)
    trainer = substitute_trainer(
        substitute=substitute,
        substitute_params=substitute_params,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        min_steps=min_steps,
    )
    return Recipe(
        name="pbayes_tang_2024",
        strategy=chosen,
        recovery=PartialBayes(
            defense,
            defense_params,
            centre=centre,
            samples_per_query=samples_per_query,
            concentration=concentration,
            tolerance=tolerance,
            norm=norm,
            refine=refine,
            clean=clean,
            trainer=trainer,
        ),
        trainer=trainer,
        rounds=rounds,
        paper="https://arxiv.org/abs/2210.11473",
    )
