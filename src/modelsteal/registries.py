"""Every registry by its plural name, for the CLI's ``list`` command and config files."""

from __future__ import annotations

from modelsteal._registry import Registry
from modelsteal.attacks import EXACT_ATTACKS, RECIPES, RECOVERIES, STRATEGIES
from modelsteal.data import DATASETS
from modelsteal.defenses import DEFENSES
from modelsteal.models import MODELS

REGISTRIES: Registry[Registry] = Registry("registry")
for _name, _registry in (
    ("datasets", DATASETS),
    ("models", MODELS),
    ("defenses", DEFENSES),
    ("recipes", RECIPES),
    ("exact", EXACT_ATTACKS),
    ("strategies", STRATEGIES),
    ("recoveries", RECOVERIES),
):
    REGISTRIES.register(_name, _registry)
