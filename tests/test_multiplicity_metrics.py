"""Correctness of the multiplicity metrics (issue 9, "What it must show" item 2)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize, minimize_scalar

from modelsteal.errors import InputValidationError, InvalidParameterError
from modelsteal.multiplicity import (
    ambiguity,
    capacity_bits,
    disagreement,
    discrepancy,
    rashomon_capacity,
    score_variance,
    summarise,
    viable_prediction_range,
)


def _onehot(labels: list[list[int]], c: int) -> np.ndarray:
    """(m, n) labels → (m, n, c) one-hot scores."""
    return np.eye(c)[np.asarray(labels)]


def _mutual_info_bits(w: np.ndarray, p: np.ndarray) -> float:
    w = np.clip(w, 0.0, None)
    w = w / w.sum()
    out = w @ p
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log2(p / out[None, :]), 0.0)
    return float(w @ terms.sum(axis=1))


def _brute_capacity_bits(p: np.ndarray) -> float:
    """Capacity by direct optimisation of the (concave) mutual information over input weights."""
    m = p.shape[0]
    if m == 2:
        res = minimize_scalar(
            lambda a: -_mutual_info_bits(np.array([a, 1 - a]), p),
            bounds=(0.0, 1.0),
            method="bounded",
            options={"xatol": 1e-12},
        )
        grid = max(_mutual_info_bits(np.array([a, 1 - a]), p) for a in np.linspace(0, 1, 2001))
        return max(-res.fun, grid)
    best = 0.0
    rng = np.random.default_rng(0)
    for start in [np.full(m, 1 / m), *rng.dirichlet(np.ones(m), size=4)]:
        res = minimize(
            lambda w: -_mutual_info_bits(w, p),
            start,
            method="SLSQP",
            bounds=[(0.0, 1.0)] * m,
            constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}],
            options={"ftol": 1e-14, "maxiter": 500},
        )
        best = max(best, -res.fun)
    return best


# --------------------------------------------------------------------------- Rashomon capacity


def test_rc_is_one_when_all_models_agree() -> None:
    rng = np.random.default_rng(1)
    row = rng.dirichlet(np.ones(4), size=6)  # (n, C)
    scores = np.repeat(row[None], 5, axis=0)
    np.testing.assert_allclose(rashomon_capacity(scores), 1.0, atol=1e-9)


@pytest.mark.parametrize(("m", "c"), [(2, 2), (2, 5), (3, 3), (4, 10)])
def test_rc_equals_m_when_models_put_all_mass_on_distinct_classes(m: int, c: int) -> None:
    scores = np.eye(c)[np.arange(m)][:, None, :]  # (m, 1, c)
    np.testing.assert_allclose(rashomon_capacity(scores), float(m), atol=1e-6)


def test_rc_with_duplicate_models_counts_distinct_predictions() -> None:
    # 4 models, only two distinct one-hot predictions → capacity 1 bit → RC = 2.
    scores = _onehot([[0], [0], [0], [1]], 3)
    np.testing.assert_allclose(rashomon_capacity(scores), 2.0, atol=1e-6)


@pytest.mark.parametrize(("m", "c"), [(2, 2), (2, 3), (3, 2), (3, 3)])
def test_rc_matches_brute_force_capacity(m: int, c: int) -> None:
    rng = np.random.default_rng(100 * m + c)
    n = 8
    scores = rng.dirichlet(np.full(c, 0.7), size=(m, n))
    rc = rashomon_capacity(scores)
    expected = np.array([2.0 ** _brute_capacity_bits(scores[:, i, :]) for i in range(n)])
    np.testing.assert_allclose(rc, expected, atol=1e-4)


def test_vectorised_equals_per_sample() -> None:
    rng = np.random.default_rng(7)
    scores = rng.dirichlet(np.ones(4), size=(5, 12))
    together = capacity_bits(scores)
    alone = np.array([capacity_bits(scores[:, i : i + 1])[0] for i in range(12)])
    np.testing.assert_allclose(together, alone, atol=1e-12)


def test_rc_many_classes_does_not_underflow() -> None:
    rng = np.random.default_rng(3)
    scores = rng.dirichlet(np.full(1000, 0.01), size=(6, 4))
    rc = rashomon_capacity(scores)
    assert np.all(np.isfinite(rc))
    assert np.all((rc >= 1.0) & (rc <= 6.0 + 1e-9))


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 5),
    n=st.integers(1, 4),
    c=st.integers(2, 5),
    alpha=st.floats(0.05, 5.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_rc_bounds(m: int, n: int, c: int, alpha: float, seed: int) -> None:
    scores = np.random.default_rng(seed).dirichlet(np.full(c, alpha), size=(m, n))
    rc = rashomon_capacity(scores)
    assert rc.shape == (n,)
    assert np.all(rc >= 1.0)
    assert np.all(rc <= min(m, c) + 1e-9)


# --------------------------------------------------------------------------- decision metrics


def test_ambiguity_and_discrepancy_hand_computed() -> None:
    # 3 models × 5 samples; reference labels b = [0, 1, 2, 0, 1].
    decisions = [
        [0, 1, 2, 0, 1],  # agrees everywhere
        [1, 1, 2, 0, 0],  # differs on samples 0 and 4
        [0, 2, 2, 0, 1],  # differs on sample 1
    ]
    scores = _onehot(decisions, 3)
    ref = np.array([0, 1, 2, 0, 1])
    # Samples 0, 1, 4 have some disagreeing model → 3/5; worst single model differs on 2/5.
    assert ambiguity(scores, ref) == pytest.approx(3 / 5)
    assert discrepancy(scores, ref) == pytest.approx(2 / 5)
    # A reference given as (n, C) scores uses its argmax.
    ref_scores = np.eye(3)[ref] * 0.6 + 0.4 / 3
    assert ambiguity(scores, ref_scores) == pytest.approx(3 / 5)
    assert discrepancy(scores, ref_scores) == pytest.approx(2 / 5)


def test_ambiguity_uses_argmax_of_soft_scores() -> None:
    scores = np.array([[[0.6, 0.4], [0.3, 0.7]], [[0.45, 0.55], [0.2, 0.8]]])
    ref = np.array([0, 1])
    assert ambiguity(scores, ref) == pytest.approx(0.5)
    assert discrepancy(scores, ref) == pytest.approx(0.5)


def test_disagreement_binary_and_multiclass() -> None:
    # Sample 0: 2 of 4 vote class 1 → 1.0; sample 1: 1 of 4 → 0.75; sample 2: all agree → 0.
    scores = _onehot([[0, 0, 1], [1, 0, 1], [0, 1, 1], [1, 0, 1]], 2)
    expected = np.array([1.0, 0.75, 0.0])
    np.testing.assert_allclose(disagreement(scores), expected)
    np.testing.assert_allclose(disagreement(scores, reduce="mean"), expected)
    # Three classes, votes (2, 1, 1) out of 4: per class 4μ(1−μ) = (1, .75, .75).
    multi = _onehot([[0], [0], [1], [2]], 3)
    np.testing.assert_allclose(disagreement(multi), [1.0])
    np.testing.assert_allclose(disagreement(multi, reduce="mean"), [2.5 / 3])


@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 6), n=st.integers(1, 5), c=st.integers(2, 6), seed=st.integers(0, 10**6))
def test_disagreement_in_unit_interval(m: int, n: int, c: int, seed: int) -> None:
    scores = np.random.default_rng(seed).dirichlet(np.ones(c), size=(m, n))
    for reduce in ("max", "mean"):
        d = disagreement(scores, reduce=reduce)
        assert d.shape == (n,)
        assert np.all((d >= 0.0) & (d <= 1.0))


# --------------------------------------------------------------------------- score metrics


def test_viable_prediction_range_and_score_variance() -> None:
    scores = np.array(
        [
            [[0.9, 0.1], [0.2, 0.8]],
            [[0.6, 0.4], [0.5, 0.5]],
            [[0.3, 0.7], [0.4, 0.6]],
        ]
    )
    labels = np.array([0, 1])
    np.testing.assert_allclose(viable_prediction_range(scores, labels), [0.6, 0.3])
    np.testing.assert_allclose(
        score_variance(scores, labels), [np.var([0.9, 0.6, 0.3]), np.var([0.8, 0.5, 0.6])]
    )


def test_summarise() -> None:
    out = summarise(np.arange(101, dtype=float))
    assert out == pytest.approx({"mean": 50.0, "q50": 50.0, "q90": 90.0, "q99": 99.0, "max": 100.0})


# --------------------------------------------------------------------------- errors


def test_errors() -> None:
    good = np.full((2, 3, 2), 0.5)
    with pytest.raises(InputValidationError, match=r"\(m models, n samples, C classes\)"):
        rashomon_capacity(np.full((3, 2), 0.5))
    with pytest.raises(InputValidationError, match="NaN or infinite"):
        rashomon_capacity(np.where(np.arange(2) == 0, np.nan, 0.5) * np.ones((2, 3, 2)))
    with pytest.raises(InputValidationError, match="sum to 1"):
        rashomon_capacity(np.full((2, 3, 2), 0.4))
    with pytest.raises(InputValidationError, match="non-negative"):
        rashomon_capacity(np.array([[[1.5, -0.5]]]))
    with pytest.raises(InputValidationError, match="at least one model"):
        rashomon_capacity(np.zeros((0, 3, 2)))
    with pytest.raises(InputValidationError, match="one label per sample"):
        ambiguity(good, np.array([0, 1]))
    with pytest.raises(InputValidationError, match=r"lie in \[0, 2\)"):
        discrepancy(good, np.array([0, 1, 2]))
    with pytest.raises(InputValidationError, match=r"shape \(3, 2\)"):
        viable_prediction_range(good, np.full((3, 4), 0.25))
    with pytest.raises(InvalidParameterError, match="'reduce' parameter"):
        disagreement(good, reduce="median")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="'max_iter' parameter"):
        capacity_bits(good, max_iter=0)
    with pytest.raises(InvalidParameterError, match="'tol' parameter"):
        capacity_bits(good, tol=-1.0)
    with pytest.raises(InputValidationError, match="empty"):
        summarise(np.array([]))
