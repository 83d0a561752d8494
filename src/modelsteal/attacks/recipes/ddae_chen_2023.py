"""D-DAE (Chen et al., IEEE S&P 2023) and D-DAE+ (Tang et al. 2024, ModelGuard, Appendix B.1).

https://doi.org/10.1109/SP46215.2023.10179406 (D-DAE); https://arxiv.org/abs/2210.11473

Random-pool queries (KnockoffNets) by default; before training, a restorer MLP learns to map
perturbed vectors back to clean ones, and every returned vector passes through it. D-DAE trains it
on shadow models' outputs perturbed by the known defense (shadows trained on the attacker's
``side_data``, passed to :func:`~modelsteal.attacks.extract`); D-DAE+ trains it on the partial
Bayes lookup table. See :mod:`modelsteal.attacks.ddae`.

Departures: no defense detector (the attacker knows the defense); ``shadows=5`` small models
rather than 20 AlexNets; restorer ``restorer_epochs=50`` rather than 200, to suit CPU runs. The
D-DAE+ table is centred on the returned vectors by default, not on the target's clean outputs;
``centre=("returned", "substitute_top1")`` with ``top1_input=True`` is the variant that recovers
ModelGuard-W's answers (see docs/attacks.md, "Recovery distance").
"""

from __future__ import annotations

from typing import Any

from modelsteal.attacks._extract import Recipe
from modelsteal.attacks.adaptive import pool_strategy
from modelsteal.attacks.ddae import DDAE, DDAEPlus
from modelsteal.attacks.recipes import RECIPES
from modelsteal.attacks.training import substitute_trainer

_PAPER = "https://doi.org/10.1109/SP46215.2023.10179406"


@RECIPES.register("ddae_chen_2023")
@RECIPES.register("ddae")
def build(
    *,
    defense: str = "none",
    defense_params: dict[str, Any] | None = None,
    shadows: int = 5,
    shadow_epochs: int = 30,
    restorer_epochs: int = 50,
    strategy: str = "random",
    strategy_params: dict[str, Any] | None = None,
    substitute: str = "auto",
    substitute_params: dict[str, Any] | None = None,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    min_steps: int = 500,
) -> Recipe:
    """D-DAE against the known ``defense``; shadows train on ``extract(..., side_data=...)``."""
    chosen, rounds = pool_strategy(strategy, strategy_params)
    return Recipe(
        name="ddae_chen_2023",
        strategy=chosen,
        recovery=DDAE(
            defense,
            defense_params,
            shadows=shadows,
            shadow_epochs=shadow_epochs,
            epochs=restorer_epochs,
        ),
        trainer=substitute_trainer(
            substitute=substitute,
            substitute_params=substitute_params,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            min_steps=min_steps,
        ),
        rounds=rounds,
        paper=_PAPER,
    )


@RECIPES.register("ddae_plus_tang_2024")
@RECIPES.register("ddae_plus")
def build_plus(
    *,
    defense: str = "none",
    defense_params: dict[str, Any] | None = None,
    centre: str | tuple[str, ...] | list[str] = "returned",
    samples_per_query: int = 20,
    concentration: float = 8.0,
    refine: int = 0,
    restorer_epochs: int = 50,
    restorer_loss: str = "l1",
    top1_input: bool = False,
    strategy: str = "random",
    strategy_params: dict[str, Any] | None = None,
    substitute: str = "auto",
    substitute_params: dict[str, Any] | None = None,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    min_steps: int = 500,
) -> Recipe:
    """D-DAE+: the restorer trained on the partial Bayes lookup table (``centre``: see
    :class:`~modelsteal.attacks.bayes.PartialBayes`; ``top1_input`` feeds the restorer the
    answer's top-1 class as well)."""
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
        name="ddae_plus_tang_2024",
        strategy=chosen,
        recovery=DDAEPlus(
            defense,
            defense_params,
            centre=centre,
            samples_per_query=samples_per_query,
            concentration=concentration,
            refine=refine,
            epochs=restorer_epochs,
            loss=restorer_loss,
            top1_input=top1_input,
            trainer=trainer,
        ),
        trainer=trainer,
        rounds=rounds,
        paper="https://arxiv.org/abs/2210.11473",
    )
