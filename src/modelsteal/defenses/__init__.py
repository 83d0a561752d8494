"""Defenses: response perturbations registered by name, and the defended-target wrapper."""

from modelsteal.defenses import basic
from modelsteal.defenses._base import DEFENSES, DefendedTarget, Defense, build_defense, defended
from modelsteal.defenses.am import (
    AdaptiveMisinformation,
    train_misinformation_model,
    train_with_outlier_exposure,
)
from modelsteal.defenses.basic import (
    GaussianNoise,
    HighConfidence,
    NoDefense,
    RandomNoise,
    ReverseSigmoid,
    Rounding,
    Top1,
    TopK,
    project_l1_ball,
)
from modelsteal.defenses.evaluate import answer, evaluate_defense
from modelsteal.defenses.mad import MAD
from modelsteal.defenses.modelguard_s import ModelGuardS
from modelsteal.defenses.modelguard_w import ModelGuardW, solve_modelguard_w
from modelsteal.defenses.stores import (
    CentroidStore,
    CentroidStoreError,
    MemoryCentroidStore,
    SQLiteCentroidStore,
)

__all__ = [
    "DEFENSES",
    "MAD",
    "AdaptiveMisinformation",
    "CentroidStore",
    "CentroidStoreError",
    "DefendedTarget",
    "Defense",
    "GaussianNoise",
    "HighConfidence",
    "MemoryCentroidStore",
    "ModelGuardS",
    "ModelGuardW",
    "NoDefense",
    "RandomNoise",
    "ReverseSigmoid",
    "Rounding",
    "SQLiteCentroidStore",
    "Top1",
    "TopK",
    "answer",
    "basic",
    "build_defense",
    "defended",
    "evaluate_defense",
    "project_l1_ball",
    "solve_modelguard_w",
    "train_misinformation_model",
    "train_with_outlier_exposure",
]
