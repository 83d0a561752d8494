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

__all__ = [
    "ambiguity",
    "capacity_bits",
    "disagreement",
    "discrepancy",
    "rashomon_capacity",
    "score_variance",
    "summarise",
    "viable_prediction_range",
]
