"""Group fairness of surrogates and target: hand-computed cases and agreement with fairlearn."""

from __future__ import annotations

import numpy as np
import pytest

from modelsteal.errors import InputValidationError, InvalidParameterError
from modelsteal.multiplicity import (
    FAIRNESS_METRICS,
    fairness_spread,
    fairness_values,
    group_fairness,
    spread_summary,
)

# Group a: 4 rows, group b: 4 rows.
Y = np.array([1, 1, 0, 0, 1, 1, 0, 0])
PRED = np.array([1, 0, 1, 0, 1, 1, 1, 1])
G = np.array(["a", "a", "a", "a", "b", "b", "b", "b"])


def test_hand_computed_case():
    # a: selection 2/4, TPR 1/2, FPR 1/2, accuracy 2/4; b: selection 4/4, TPR 1, FPR 1, acc 2/4
    expected = {
        "demographic_parity_difference": 0.5,
        "equalized_odds_difference": 0.5,
        "equal_opportunity_difference": 0.5,
        "accuracy_difference": 0.0,
        "accuracy[a]": 0.5,
        "accuracy[b]": 0.5,
    }
    got = group_fairness(Y, PRED, G)
    assert got == pytest.approx(expected)
    vals = fairness_values(Y, PRED[None], G)
    assert {k: float(v[0]) for k, v in vals.items()} == pytest.approx(expected)


def test_equalized_odds_takes_the_worse_of_tpr_and_fpr_gaps():
    y = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    pred = np.array([1, 1, 0, 0, 1, 1, 1, 0])  # TPR equal (1, 1); FPR 0 vs 1/2
    got = group_fairness(y, pred, G)
    assert got["equal_opportunity_difference"] == pytest.approx(0.0)
    assert got["equalized_odds_difference"] == pytest.approx(0.5)
    assert got["demographic_parity_difference"] == pytest.approx(0.25)
    assert got["accuracy[b]"] == pytest.approx(0.75)
    assert got["accuracy_difference"] == pytest.approx(0.25)


def test_scores_are_argmaxed_and_positive_class_binarises_multiclass():
    y = np.array([2, 0, 2, 1, 2, 0])
    pred = np.array([2, 2, 0, 1, 2, 2])
    g = np.array(["x", "x", "x", "y", "y", "y"])
    scores = np.eye(3)[pred] * 0.8 + 0.2 / 3
    a = group_fairness(y, scores, g, positive_class=2)
    b = group_fairness(y, pred, g, positive_class=2)
    assert a == b
    # x: selection 2/3, TPR 1/2; y: selection 2/3, TPR 1 (one positive row, predicted 2)
    assert a["demographic_parity_difference"] == pytest.approx(0.0)
    assert a["equal_opportunity_difference"] == pytest.approx(0.5)
    # accuracy compares classes, not the binarised decision: x 1/3, y 2/3
    assert a["accuracy[x]"] == pytest.approx(1 / 3) and a["accuracy[y]"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_values_equal_fairlearn_model_by_model(seed):
    rng = np.random.default_rng(seed)
    n, m, c = 400, 6, 3
    y = rng.integers(0, c, n)
    scores = rng.dirichlet(np.ones(c), size=(m, n))
    g = rng.choice(["p", "q", "r", "s"], n, p=[0.5, 0.3, 0.17, 0.03])
    vals = fairness_values(y, scores, g, positive_class=1, min_group_size=20)
    assert "accuracy[s]" not in vals  # fewer than 20 rows: left out
    for j in range(m):
        ref = group_fairness(y, scores[j], g, positive_class=1, min_group_size=20)
        assert set(ref) == set(vals)
        for k, v in ref.items():
            assert vals[k][j] == pytest.approx(v, abs=1e-12)


def test_min_group_size_drops_rows_of_small_groups():
    g = np.array(["a", "a", "a", "a", "b", "b", "b", "c"])
    pred = PRED.copy()
    full = group_fairness(Y, pred, g)
    kept = group_fairness(Y, pred, g, min_group_size=2)
    assert "accuracy[c]" in full and "accuracy[c]" not in kept
    with pytest.raises(InputValidationError, match="at least 2 groups with at least 5 rows"):
        group_fairness(Y, pred, g, min_group_size=5)
    with pytest.raises(InvalidParameterError, match="'min_group_size' parameter"):
        fairness_values(Y, pred, g, min_group_size=0)


def test_spread_summary_and_fairness_spread():
    values = {"demographic_parity_difference": np.array([0.1, 0.3, 0.2])}
    s = spread_summary(values, {"demographic_parity_difference": 0.25})
    d = s["demographic_parity_difference"]
    assert d["target"] == 0.25 and d["min"] == 0.1 and d["max"] == 0.3
    assert d["range"] == pytest.approx(0.2) and d["std"] == pytest.approx(np.std([0.1, 0.3, 0.2]))
    assert d["n_models"] == 3
    sub = spread_summary(values, {}, members=[0, 2])["demographic_parity_difference"]
    assert sub["max"] == 0.2 and np.isnan(sub["target"])

    decisions = np.stack([PRED, 1 - PRED, np.ones(8, dtype=int)])
    out = fairness_spread(Y, decisions, Y, G)
    assert set(FAIRNESS_METRICS) <= set(out)
    per_model = [group_fairness(Y, d, G)["demographic_parity_difference"] for d in decisions]
    assert out["demographic_parity_difference"]["max"] == pytest.approx(max(per_model))
    assert out["demographic_parity_difference"]["target"] == pytest.approx(0.0)  # y itself


def test_input_errors():
    with pytest.raises(InputValidationError, match="aligned row for row"):
        fairness_values(Y, PRED[:5], G)
    with pytest.raises(InputValidationError, match=r"sensitive_features must be an \(8,\) array"):
        fairness_values(Y, PRED, G[:3])
    with pytest.raises(InputValidationError, match="y_true must be a non-empty"):
        group_fairness(np.zeros((2, 2)), PRED, G)
    with pytest.raises(InputValidationError, match="use fairness_values"):
        group_fairness(Y, np.stack([PRED, PRED]), G)
