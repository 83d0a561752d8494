import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from modelsteal.errors import InputValidationError
from modelsteal.metrics import accuracy, fidelity, kl_divergence, l1_distances, l1_distortion


def test_accuracy_and_fidelity_hand_computed():
    y = np.array([0, 1, 2, 2])
    probs = np.array([[0.9, 0.1, 0], [0.2, 0.7, 0.1], [0.5, 0.2, 0.3], [0, 0, 1]])
    assert accuracy(y, probs) == 0.75
    assert accuracy(y, np.array([0, 1, 2, 0])) == 0.75
    assert fidelity(probs, np.array([0, 1, 0, 2])) == 1.0
    assert fidelity(np.array([1, 1, 1, 1]), probs) == 0.25


def test_l1_and_kl_hand_computed():
    p = np.array([[1.0, 0.0], [0.5, 0.5]])
    q = np.array([[0.0, 1.0], [0.5, 0.5]])
    np.testing.assert_allclose(l1_distances(p, q), [2.0, 0.0])
    assert l1_distortion(p, q) == {"mean": 1.0, "max": 2.0}
    r = np.array([[0.5, 0.5]])
    assert kl_divergence(np.array([[1.0, 0.0]]), r) == pytest.approx(np.log(2))


def _simplex(n, c):
    return arrays(np.float64, (n, c), elements=st.floats(0.01, 1.0)).map(
        lambda a: a / a.sum(axis=1, keepdims=True)
    )


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 8), st.integers(2, 6), st.data())
def test_distribution_metrics_properties(n, c, data):
    p = data.draw(_simplex(n, c))
    q = data.draw(_simplex(n, c))
    d = l1_distances(p, q)
    assert np.all(d >= 0) and np.all(d <= 2 + 1e-12)
    assert kl_divergence(p, q) >= -1e-12
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    assert fidelity(p, p) == 1.0


def test_metric_errors():
    with pytest.raises(InputValidationError, match="same samples. Got 2 and 3 rows"):
        accuracy(np.array([0, 1]), np.array([0, 1, 1]))
    with pytest.raises(InputValidationError, match="same shape"):
        l1_distances(np.ones((2, 3)) / 3, np.ones((2, 4)) / 4)
    with pytest.raises(InputValidationError, match="empty"):
        fidelity(np.array([], dtype=int), np.array([], dtype=int))
    with pytest.raises(InputValidationError, match=r"\(n,\) labels or \(n, C\) scores"):
        accuracy(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))


def test_auroc_matches_brute_force_and_sklearn():
    from sklearn.metrics import roc_auc_score

    from modelsteal.metrics import auroc, ood_auroc

    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 40).astype(float), rng.integers(0, 5, 30).astype(float)
    brute = np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg])
    assert auroc(pos, neg) == pytest.approx(brute)
    labels = np.r_[np.ones(40), np.zeros(30)]
    assert auroc(pos, neg) == pytest.approx(roc_auc_score(labels, np.r_[pos, neg]))
    confident = np.eye(3)[[0, 1, 2, 0]]
    unsure = np.full((5, 3), 1 / 3)
    assert ood_auroc(confident, unsure) == 1.0 and ood_auroc(unsure, confident) == 0.0
    with pytest.raises(InputValidationError, match="same C"):
        ood_auroc(confident, np.full((2, 4), 0.25))
