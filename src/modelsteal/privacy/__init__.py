"""Imitation privacy: how closely a module can be imitated, and (ε, δ)-privacy estimates.

Also assisted learning (two parties with different columns of the same records), the paper's
Examples 3, 4, 6 and 7 of imitations in assisted learning, as measurable functions, and ρ against
the imitator's budget and side information (model class, data distribution).
"""

from modelsteal.privacy.assisted import (
    LEARNERS,
    AssistedLearning,
    Imitation,
    Module,
    SingleParty,
    StageAnswer,
    ZeroImitation,
    assisted_curve,
    make_learner,
    make_vertical_task,
    module_privacy,
)
from modelsteal.privacy.examples import (
    EXAMPLES,
    LinearMapImitation,
    example3,
    example4,
    example6,
    example7,
    laplace_release,
    own_data_imitation,
    recover_span,
    run_example,
    span_basis,
    span_error,
    tree_order_from_basis,
)
from modelsteal.privacy.imitation import (
    imitation_loss,
    imitation_privacy,
    is_private,
    multi_task_privacy,
    privacy_probability,
)
from modelsteal.privacy.side_information import LEVELS, side_information_curve

__all__ = [
    "EXAMPLES",
    "LEARNERS",
    "LEVELS",
    "AssistedLearning",
    "Imitation",
    "LinearMapImitation",
    "Module",
    "SingleParty",
    "StageAnswer",
    "ZeroImitation",
    "assisted_curve",
    "example3",
    "example4",
    "example6",
    "example7",
    "imitation_loss",
    "imitation_privacy",
    "is_private",
    "laplace_release",
    "make_learner",
    "make_vertical_task",
    "module_privacy",
    "multi_task_privacy",
    "own_data_imitation",
    "privacy_probability",
    "recover_span",
    "run_example",
    "side_information_curve",
    "span_basis",
    "span_error",
    "tree_order_from_basis",
]
