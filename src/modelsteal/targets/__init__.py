"""Targets: anything reachable by queries, and the wrappers that return another target."""

from modelsteal.targets._adapters import FunctionTarget, OnnxTarget, SklearnTarget, TorchTarget
from modelsteal.targets._base import (
    BaseTarget,
    ExplainableTarget,
    Target,
    one_hot,
    output_kind,
    softmax,
)
from modelsteal.targets._http import HttpTarget, HttpTargetError, QuotaExceeded
from modelsteal.targets._loading import load_target
from modelsteal.targets._wrappers import (
    BudgetedTarget,
    LabelOnlyTarget,
    LoggedTarget,
    QueryLog,
    budgeted,
    label_only,
    logged,
)

__all__ = [
    "BaseTarget",
    "BudgetedTarget",
    "ExplainableTarget",
    "FunctionTarget",
    "HttpTarget",
    "HttpTargetError",
    "LabelOnlyTarget",
    "LoggedTarget",
    "OnnxTarget",
    "QueryLog",
    "QuotaExceeded",
    "SklearnTarget",
    "Target",
    "TorchTarget",
    "budgeted",
    "label_only",
    "load_target",
    "logged",
    "one_hot",
    "output_kind",
    "softmax",
]
