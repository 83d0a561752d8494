"""Attack recipes, one small file per paper, registered by name in :data:`RECIPES`.

A recipe file defines ``build(**params) -> Recipe`` and registers it under the paper's name
(``method_author_year``) and, where it helps, a short alias.
"""

from __future__ import annotations

from collections.abc import Callable

from modelsteal._registry import Registry
from modelsteal.attacks._extract import Recipe

RECIPES: Registry[Callable[..., Recipe]] = Registry("recipe")

from modelsteal.attacks.recipes import (  # noqa: E402,F401  (registers)
    activethief_pal_2020,
    ddae_chen_2023,
    jbda_papernot_2017,
    jbda_tr_juuti_2019,
    knockoff_adaptive_orekondy_2019,
    knockoff_orekondy_2019,
    mqpi_tang_2024,
    pbayes_tang_2024,
    s4l_jagielski_2020,
    smoothing_lukas_2022,
)


def build_recipe(name: str, **params) -> Recipe:
    """Build the recipe registered as ``name`` with ``params``."""
    return RECIPES.get(name)(**params)
