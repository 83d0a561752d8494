"""Exact extraction: equation solving, tree path finding, label-only linear attacks, and
reconstruction from gradient explanations or logits.

Every attack is a function ``attack(target, *, seed, ..., budget=None) -> ExactResult`` registered
in :data:`EXACT_ATTACKS`; it spends queries only through a :func:`~modelsteal.targets.budgeted`
wrapper it creates, so ``result.queries`` is exact.
"""

from modelsteal.attacks.exact._base import EXACT_ATTACKS, ExactAttack, ExactResult
from modelsteal.attacks.exact.equations import (
    equation_solving_lr,
    equation_solving_mlp,
    equation_solving_softmax,
)
from modelsteal.attacks.exact.gradients import ReluNetTarget, relu_from_gradients
from modelsteal.attacks.exact.logits import relu_from_logits
from modelsteal.attacks.exact.lowd_meek import adaptive_retraining, lowd_meek
from modelsteal.attacks.exact.matching import MatchedSubstitute, train_gradient_matching
from modelsteal.attacks.exact.runner import run_exact, save_exact
from modelsteal.attacks.exact.trees import LeafTarget, TabularData, load_adult, tree_path_finding

__all__ = [
    "EXACT_ATTACKS",
    "ExactAttack",
    "ExactResult",
    "LeafTarget",
    "MatchedSubstitute",
    "ReluNetTarget",
    "TabularData",
    "adaptive_retraining",
    "equation_solving_lr",
    "equation_solving_mlp",
    "equation_solving_softmax",
    "load_adult",
    "lowd_meek",
    "relu_from_gradients",
    "relu_from_logits",
    "run_exact",
    "save_exact",
    "train_gradient_matching",
    "tree_path_finding",
]
