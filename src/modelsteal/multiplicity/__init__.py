"""Model multiplicity: how far equally faithful stolen surrogates differ."""

from modelsteal.multiplicity.awp import AWPSample, sample_awp
from modelsteal.multiplicity.fairness import (
    FAIRNESS_METRICS,
    fairness_spread,
    fairness_values,
    group_fairness,
    spread_summary,
)
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
    "FAIRNESS_METRICS",
    "AWPSample",
    "DropoutSample",
    "ambiguity",
    "capacity_bits",
    "disagreement",
    "discrepancy",
    "fairness_spread",
    "fairness_values",
    "group_fairness",
    "rashomon_capacity",
    "rashomon_set",
    "sample_awp",
    "sample_dropout",
    "sample_retrained",
    "score_variance",
    "spread_summary",
    "stack_scores",
    "summarise",
    "viable_prediction_range",
]
