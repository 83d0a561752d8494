"""Attacks: query strategies, recoveries and substitute trainers wired into recipes."""

from modelsteal.attacks import bayes, ddae  # noqa: F401  (registers "pbayes", "ddae", "ddae_plus")
from modelsteal.attacks._base import (
    RECOVERIES,
    STRATEGIES,
    AttackState,
    PlainQuerier,
    Proposal,
    Querier,
    QueryStrategy,
    Recovery,
)
from modelsteal.attacks._extract import ExtractionResult, Progress, Recipe, extract
from modelsteal.attacks.activethief import ActiveThief, entropy_stop
from modelsteal.attacks.adaptive import RepeatQuerier, S4LTrainer, SmoothingQuerier
from modelsteal.attacks.adaptive_knockoff import KnockoffAdaptive
from modelsteal.attacks.exact import EXACT_ATTACKS, ExactResult
from modelsteal.attacks.recipes import RECIPES, build_recipe
from modelsteal.attacks.strategies import RandomPool
from modelsteal.attacks.synthetic import JBDA, JBDATR, UniformNoise, jbda_rounds
from modelsteal.attacks.training import SubstituteTrainer, default_architecture

__all__ = [
    "EXACT_ATTACKS",
    "JBDA",
    "JBDATR",
    "RECIPES",
    "RECOVERIES",
    "STRATEGIES",
    "ActiveThief",
    "AttackState",
    "ExactResult",
    "ExtractionResult",
    "KnockoffAdaptive",
    "PlainQuerier",
    "Progress",
    "Proposal",
    "Querier",
    "QueryStrategy",
    "RandomPool",
    "Recipe",
    "Recovery",
    "RepeatQuerier",
    "S4LTrainer",
    "SmoothingQuerier",
    "SubstituteTrainer",
    "UniformNoise",
    "build_recipe",
    "default_architecture",
    "entropy_stop",
    "extract",
    "jbda_rounds",
]
