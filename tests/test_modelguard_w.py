"""ModelGuard-W: the exact batched solver against HiGHS, its constraints, and the defense."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from modelsteal.defenses._base import DEFENSES, build_defense
from modelsteal.defenses.modelguard_w import (
    ModelGuardW,
    modelguard_w_objective,
    solve_modelguard_w,
    solve_modelguard_w_highs,
)
from modelsteal.errors import InvalidParameterError

OBJECTIVE_TOL = 1e-7
CONSTRAINT_TOL = 1e-9


def _violations(y: np.ndarray, out: np.ndarray, eps: np.ndarray, margin: float) -> np.ndarray:
    """Per row, the largest violation of any constraint of Eq. 9 (<= 0 when all hold)."""
    rows = np.arange(len(y))
    top = y.argmax(axis=1)
    others = out.copy()
    others[rows, top] = -np.inf
    return np.max(
        [
            np.abs(out - y).sum(axis=1) - eps,  # l1 budget
            np.abs(out.sum(axis=1) - 1.0),  # simplex
            -out.min(axis=1),  # non-negative
            others.max(axis=1) - out[rows, top] + margin,  # argmax kept by the margin
        ],
        axis=0,
    )


def _assert_matches_highs(y, eps, *, margin=1e-4, log_floor=1e-6):
    eps = np.broadcast_to(np.asarray(eps, dtype=np.float64), (len(y),))
    out, info = solve_modelguard_w(y, eps, margin=margin, log_floor=log_floor, return_info=True)
    ref, ref_info = solve_modelguard_w_highs(
        y, eps, margin=margin, log_floor=log_floor, return_info=True
    )
    np.testing.assert_array_equal(info.infeasible, ref_info.infeasible)
    np.testing.assert_array_equal(out[info.infeasible], y[info.infeasible])  # returned unchanged
    ok = ~info.infeasible
    gap = modelguard_w_objective(y, out, log_floor=log_floor) - modelguard_w_objective(
        y, ref, log_floor=log_floor
    )
    assert np.all(np.abs(gap[ok]) <= OBJECTIVE_TOL), gap[ok].max()
    assert np.all(_violations(y, out, eps, margin)[ok] <= CONSTRAINT_TOL)
    return out, info


def _hard_rows(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    """Peaked, near-uniform, tied, sparse and margin-breaking rows."""
    rows = []
    for i in range(n):
        kind = i % 8
        if kind == 0:  # peaked
            y = rng.dirichlet(np.full(c, 0.05))
        elif kind == 1:  # near-uniform
            y = rng.dirichlet(np.full(c, 500.0))
        elif kind == 2:  # exact ties (coarse values)
            y = rng.integers(0, 3, c).astype(np.float64) + (rng.random() < 0.5)
        elif kind == 3:  # exact zeros
            y = rng.dirichlet(np.ones(c)) * (rng.random(c) < 0.4)
        elif kind == 4:  # top tied or within the margin of the runner-up
            y = rng.dirichlet(np.ones(c))
            j = rng.integers(c)
            y[j] = y.max() - rng.choice([0.0, 3e-5, 2e-4])
        elif kind == 5:  # one-hot
            y = np.eye(c)[rng.integers(c)]
        elif kind == 6:  # exactly uniform
            y = np.ones(c)
        else:
            y = rng.dirichlet(np.ones(c))
        y = np.clip(y, 0.0, None)
        if y.sum() == 0:
            y[0] = 1.0
        rows.append(y / y.sum())
    return np.array(rows)


@pytest.mark.parametrize("c", [2, 3, 10, 100, 256])
def test_exact_solver_matches_highs_on_hard_cases(c):
    rng = np.random.default_rng(c)
    n = 64
    y = _hard_rows(rng, n, c)
    eps = rng.choice([1e-9, 1e-6, 5e-5, 1e-4, 1e-3, 0.05, 0.5, 1.0, 1.9, 2.0], size=n)
    eps[::7] = rng.uniform(0.0, 2.0, size=len(eps[::7]))
    _assert_matches_highs(y, eps)


@pytest.mark.parametrize(("margin", "log_floor"), [(0.0, 1e-6), (1e-2, 1e-12), (0.3, 0.1)])
def test_exact_solver_matches_highs_for_other_margins_and_floors(margin, log_floor):
    rng = np.random.default_rng(7)
    for c in (3, 10, 50):
        y = _hard_rows(rng, 24, c)
        eps = rng.choice([1e-6, 1e-3, 0.1, 0.7, 2.0], size=len(y))
        _assert_matches_highs(y, eps, margin=margin, log_floor=log_floor)


def _rows(c: int):
    weights = arrays(np.float64, (3, c), elements=st.sampled_from([0.0, 1e-9, 0.01, 0.3, 1.0, 5.0]))
    return weights.map(lambda w: np.where(w.sum(axis=1, keepdims=True) > 0, w, 1.0)).map(
        lambda w: w / w.sum(axis=1, keepdims=True)
    )


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    c=st.integers(2, 7),
    eps=st.sampled_from([1e-7, 1e-4, 2e-4, 0.01, 0.3, 1.0, 1.5, 2.0]),
    margin=st.sampled_from([0.0, 1e-4, 0.05]),
)
def test_exact_solver_matches_highs_property(data, c, eps, margin):
    _assert_matches_highs(data.draw(_rows(c)), eps, margin=margin)


def test_hand_computed_solutions():
    m = 1e-4
    # Two classes, small budget: ε/2 moves from the top to the other class.
    out = solve_modelguard_w(np.array([[0.3, 0.7]]), 0.2)
    np.testing.assert_allclose(out, [[0.4, 0.6]], atol=1e-12)
    # A small budget goes from the top to the cheapest class.
    out = solve_modelguard_w(np.array([[0.1, 0.6, 0.3]]), 0.1)
    np.testing.assert_allclose(out, [[0.15, 0.55, 0.3]], atol=1e-12)
    # Appendix A.2 (ε = 2): the top and the cheapest class level at the cap, the dear one at 0.
    out = solve_modelguard_w(np.array([[0.45, 0.44, 0.11]]), 2.0)
    np.testing.assert_allclose(out, [[(1 + m) / 2, 0.0, (1 - m) / 2]], atol=1e-12)
    # One-hot with the whole budget: every other class at the cap, the top m above it.
    level = (1 - m) / 5
    out = solve_modelguard_w(np.eye(5)[[2]], 2.0)
    np.testing.assert_allclose(out, [[level, level, level + m, level, level]], atol=1e-12)
    # Without a budget the clean row comes back.
    y = np.array([[0.2, 0.5, 0.3]])
    np.testing.assert_allclose(solve_modelguard_w(y, 0.0), y, atol=1e-15)


def test_rows_that_break_the_margin():
    tied = np.array([[0.5, 0.5, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    # The margin needs at least m of l1 to separate two tied classes: with less, no ŷ exists.
    out, info = solve_modelguard_w(tied, 5e-5, return_info=True)
    np.testing.assert_array_equal(out, tied)
    assert info.n_infeasible == 2
    _assert_matches_highs(tied, 5e-5)
    # With enough budget the margin is restored and the argmax (index 0) kept.
    out, info = solve_modelguard_w(tied, 3e-4, return_info=True)
    assert info.n_infeasible == 0
    assert np.all(out.argmax(axis=1) == 0)
    _assert_matches_highs(tied, 3e-4)


def test_batch_answers_equal_row_by_row_answers():
    rng = np.random.default_rng(11)
    y = _hard_rows(rng, 40, 30)
    eps = rng.uniform(0.0, 2.0, size=40)
    batch = solve_modelguard_w(y, eps)
    single = np.concatenate([solve_modelguard_w(y[i : i + 1], eps[i]) for i in range(40)])
    gap = modelguard_w_objective(y, batch) - modelguard_w_objective(y, single)
    assert np.abs(gap).max() <= 1e-10


def test_solver_input_errors():
    y = np.array([[0.2, 0.8]])
    with pytest.raises(
        InvalidParameterError,
        match=r"'epsilon' parameter of solve_modelguard_w must be a float in \[0, inf\)\. Got -1",
    ):
        solve_modelguard_w(y, -1)
    with pytest.raises(InvalidParameterError, match=r"one per row \(shape \(1,\)\)"):
        solve_modelguard_w(y, np.array([0.1, 0.2]))
    with pytest.raises(InvalidParameterError, match=r"'margin' parameter .* \[0, 1\)\. Got 1"):
        solve_modelguard_w(y, 0.1, margin=1)
    with pytest.raises(Exception, match="probability vectors"):
        solve_modelguard_w(np.full((1, 2), 0.7), 0.1)


def test_defense_is_registered_and_keeps_its_promises():
    assert DEFENSES.get("modelguard_w") is ModelGuardW
    defense = build_defense("modelguard_w", epsilon=0.5)
    assert defense.preserves_argmax and defense.max_l1 == 0.5
    assert defense.params() == {
        "epsilon": 0.5,
        "margin": 1e-4,
        "log_floor": 1e-6,
        "solver": "exact",
    }
    y = np.random.default_rng(0).dirichlet(np.full(10, 0.3), size=50)
    out = defense.perturb(y)
    assert np.all(out.argmax(axis=1) == y.argmax(axis=1))
    assert np.all(np.abs(out - y).sum(axis=1) <= 0.5 + 1e-9)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-12)
    ref = build_defense("modelguard_w", epsilon=0.5, solver="highs").perturb(y[:10])
    gap = modelguard_w_objective(y[:10], out[:10]) - modelguard_w_objective(y[:10], ref)
    assert np.abs(gap).max() <= OBJECTIVE_TOL
    # It moves mass away from the classes the model believes in.
    assert np.all(modelguard_w_objective(y, out) < modelguard_w_objective(y, y))


def test_defense_warns_about_rows_it_cannot_repair(caplog):
    defense = ModelGuardW(epsilon=5e-5)
    tied = np.array([[0.5, 0.5], [0.2, 0.8]])
    with caplog.at_level(logging.WARNING, logger="modelsteal.defenses.modelguard_w"):
        out = defense.perturb(tied)
    np.testing.assert_array_equal(out[0], tied[0])
    assert "1 of 2 rows" in caplog.text


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"epsilon": 0}, r"'epsilon' parameter of ModelGuardW must be a float in \(0, 2\]. Got 0"),
        ({"epsilon": -0.5}, r"'epsilon' parameter of ModelGuardW must be a float in \(0, 2\]"),
        ({"epsilon": 2.5}, r"'epsilon' parameter of ModelGuardW must be a float in \(0, 2\]"),
        ({"epsilon": "1"}, r"'epsilon' parameter of ModelGuardW must be a float in \(0, 2\]"),
        ({"margin": 1.0}, r"'margin' parameter of ModelGuardW must be a float in \[0, 1\)"),
        ({"log_floor": 0}, r"'log_floor' parameter of ModelGuardW must be a float in \(0, inf\)"),
        (
            {"solver": "cbc"},
            r"'solver' parameter of ModelGuardW must be one of 'exact', 'highs'. Got 'cbc'",
        ),
    ],
)
def test_defense_parameter_errors(params, match):
    with pytest.raises(InvalidParameterError, match=match):
        ModelGuardW(**params)
    with pytest.raises(InvalidParameterError, match=match):
        build_defense("modelguard_w", **params)


def test_given_top_agrees_with_the_solution_it_describes():
    """g(T) from the prefix sums equals the objective of the solution built from its structure,
    and its one-sided slopes match finite differences away from kinks."""
    from modelsteal.defenses import modelguard_w as mw

    rng = np.random.default_rng(5)
    m, floor, h = 1e-4, 1e-6, 1e-7
    checked = kinks = 0
    for c in (3, 10, 100):
        y = _hard_rows(rng, 48, c)
        for row, eps in zip(y, rng.uniform(0.0, 2.0, size=len(y)), strict=True):
            top, t, order, a, cost, sa, sc, sca = mw._row_prepare(row, floor)
            half = eps / 2
            lo, hi = mw._row_interval(a, sa, top, half, m)
            if not lo < hi - 1e-6:
                continue
            T = lo + (hi - lo) * rng.uniform(0.05, 0.95)
            args = (a, sa, sc, sca, cost, top, np.log(top + floor), half, m)
            g, right = mw._given_top(T, 1.0, *args)
            out = np.empty(c)
            mw._row_solution(T, m, half, top, a, sa, out, order, t)
            built = modelguard_w_objective(row[None], out[None], log_floor=floor)[0]
            assert abs(g - built) <= 1e-10
            _, left = mw._given_top(T, -1.0, *args)
            if abs(right + left) >= 1e-9:  # a kink at T: the one-sided slopes differ
                kinks += 1
                continue
            checked += 1
            assert abs((mw._given_top(T + h, 1.0, *args)[0] - g) / h - right) <= 1e-5
            assert abs((g - mw._given_top(T - h, 1.0, *args)[0]) / h + left) <= 1e-5
    assert checked > 4 * kinks


@pytest.mark.parametrize("c", [2, 10, 20, 21, 100, 256])  # 20, 21: around _TOP_FIRST
def test_exact_solver_matches_highs_on_random_rows(c):
    rng = np.random.default_rng(100 + c)
    y = rng.dirichlet(np.full(c, 0.3), size=40)
    eps = rng.uniform(1e-3, 2.0, size=40)
    _assert_matches_highs(y, eps)
    single = np.concatenate([solve_modelguard_w(y[i : i + 1], eps[i]) for i in range(40)])
    np.testing.assert_array_equal(single, solve_modelguard_w(y, eps))  # whatever the batch


@pytest.mark.parametrize("c", [2, 3, 10, 100, 256])
def test_exact_solver_matches_highs_one_row_at_a_time(c):
    rng = np.random.default_rng(200 + c)
    n = 32
    y = _hard_rows(rng, n, c)
    eps = rng.choice([1e-9, 5e-5, 1e-4, 1e-3, 0.05, 0.5, 1.0, 1.9, 2.0], size=n)
    eps[::5] = rng.uniform(0.0, 2.0, size=len(eps[::5]))
    ref, ref_info = solve_modelguard_w_highs(y, eps, return_info=True)
    for i in range(n):
        out, info = solve_modelguard_w(y[i : i + 1], eps[i], return_info=True)
        assert info.infeasible[0] == ref_info.infeasible[i]
        if info.infeasible[0]:
            np.testing.assert_array_equal(out[0], y[i])
            continue
        gap = modelguard_w_objective(y[i : i + 1], out) - modelguard_w_objective(
            y[i : i + 1], ref[i : i + 1]
        )
        assert abs(gap[0]) <= OBJECTIVE_TOL
        assert _violations(y[i : i + 1], out, eps[i : i + 1], 1e-4)[0] <= CONSTRAINT_TOL


def test_solver_takes_inputs_in_every_spelling():
    rng = np.random.default_rng(3)
    y = rng.dirichlet(np.full(12, 0.5), size=4)
    eps = np.array([0.2, 0.7, 1.3, 2.0])
    expected = solve_modelguard_w(y, eps)
    # other spellings of the same batch: lists, float32 rows, numpy and int budgets
    np.testing.assert_allclose(solve_modelguard_w(y.tolist(), eps), expected, atol=1e-12)
    np.testing.assert_allclose(solve_modelguard_w(y, list(eps)), expected, atol=1e-12)
    one = solve_modelguard_w(y[:1], np.float64(0.2))
    np.testing.assert_allclose(one, expected[:1], atol=1e-12)
    np.testing.assert_allclose(
        solve_modelguard_w(y[:1], 2), solve_modelguard_w(y[:1], np.array([2.0])), atol=1e-12
    )
    y32 = y.astype(np.float32)
    np.testing.assert_allclose(
        solve_modelguard_w(y32, eps), solve_modelguard_w(y32.astype(np.float64), eps), atol=1e-12
    )
    # rows off the simplex by rounding are renormalised first, as by the general path
    off = y * (1 + 1e-9)
    renormalised = off / off.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(
        solve_modelguard_w(off, eps), solve_modelguard_w(renormalised, eps), atol=1e-12
    )
    # and broken rows fail with the general path's messages
    with pytest.raises(Exception, match="probability vectors"):
        solve_modelguard_w(np.array([[0.5, np.nan]]), 0.1)
    with pytest.raises(Exception, match="negative entry"):
        solve_modelguard_w(np.array([[1.2, -0.2]]), 0.1)
    with pytest.raises(InvalidParameterError, match="'epsilon' parameter"):
        solve_modelguard_w(y[:1], np.nan)
    with pytest.raises(InvalidParameterError, match="'margin' parameter"):
        solve_modelguard_w(y[:1], 0.1, margin=-1e-4)


def test_solver_handles_ties_zeros_and_one_class():
    y = np.array([[0.25, 0.25, 0.25, 0.25], [0.5, 0.5, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    for eps in (5e-5, 3e-4, 0.5, 2.0):
        _assert_matches_highs(y[:1], eps)
        for i in range(len(y)):
            out, info = solve_modelguard_w(y[i : i + 1], eps, return_info=True)
            _, ref_info = solve_modelguard_w_highs(y[i : i + 1], eps, return_info=True)
            assert info.infeasible[0] == ref_info.infeasible[0]
            if not info.infeasible[0]:
                assert out[0].argmax() == y[i].argmax()
    np.testing.assert_array_equal(solve_modelguard_w(np.ones((1, 1)), 0.5), np.ones((1, 1)))
