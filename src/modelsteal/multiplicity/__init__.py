"""Model multiplicity: how far equally faithful stolen surrogates differ."""

from modelsteal.multiplicity.metrics import (
    ambiguity,
    capacity_bits,
    disagreement,
    discrepancy,
    rashomon_capacity,
    score_variance,
    summarise,
    viable_prediction_range,
)
from modelsteal.multiplicity.sampling import (
    DropoutSample,
    rashomon_set,
    sample_dropout,
    sample_retrained,
    stack_scores,
)

__all__ = [
    "DropoutSample",
    "ambiguity",
    "capacity_bits",
    "disagreement",
    "discrepancy",
    "rashomon_capacity",
    "rashomon_set",
    "sample_dropout",
    "sample_retrained",
    "score_variance",
    "stack_scores",
    "summarise",
    "viable_prediction_range",
]
