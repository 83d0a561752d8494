"""The paper's Examples 3, 4, 6, 7 as measurements, ρ's anchor points, and the privacy CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LinearRegression
from sklearn.tree import DecisionTreeRegressor

from modelsteal.errors import InputValidationError, InvalidParameterError
from modelsteal.privacy import (
    Module,
    ZeroImitation,
    example3,
    example4,
    example6,
    example7,
    laplace_release,
    module_privacy,
    own_data_imitation,
    recover_span,
    run_example,
    span_error,
    tree_order_from_basis,
)


def _ols():
    return LinearRegression(fit_intercept=False)


@pytest.fixture
def linear_setting():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    tasks = [x @ rng.normal(size=4) + 0.5 * rng.normal(size=200) for _ in range(5)]
    return x, tasks, rng.normal(size=(300, 4))


# --------------------------------------------------------------------------- anchors of ρ


@pytest.mark.parametrize("learner", [_ols(), "linear", "tree"])
def test_rho_is_zero_for_an_exact_copy_and_for_alice_holding_bobs_data(linear_setting, learner):
    x, tasks, future = linear_setting
    bob = Module(x, learner)
    exact = module_privacy(bob, bob, tasks=tasks, x_future=future, n_boot=50)
    assert exact == {"rho": 0.0, "low": 0.0, "high": 0.0}
    alice = own_data_imitation(bob)  # Bob's data and algorithm in Alice's hands
    assert alice is not bob
    out = module_privacy(bob, alice, tasks=tasks, x_future=future, n_boot=50)
    assert out == {"rho": 0.0, "low": 0.0, "high": 0.0}


def test_rho_is_one_for_the_all_zero_regression_imitation(linear_setting):
    x, tasks, future = linear_setting
    out = module_privacy(Module(x, _ols()), ZeroImitation(), tasks=tasks, x_future=future)
    assert out["rho"] == pytest.approx(1.0)
    assert out["low"] == pytest.approx(1.0) and out["high"] == pytest.approx(1.0)


# --------------------------------------------------------------------------- Example 3


@settings(max_examples=20, deadline=None, derandomize=True)
@given(p=st.integers(1, 8), extra=st.integers(1, 40), seed=st.integers(0, 1000))
def test_span_recovery_is_exact_at_k1_equal_p(p, extra, seed):
    x = np.random.default_rng(seed).normal(size=(p + extra, p))
    bob = Module(x, _ols())
    assert span_error(recover_span(bob, p, seed=seed), x) < 1e-9
    assert bob.stage1_queries == p
    if p > 1:  # one query short: a whole direction of span(X_B) is missing
        assert span_error(recover_span(bob, p - 1, seed=seed), x) > 0.999


def test_example3_rho_vanishes_with_n_and_needs_k1_at_least_p():
    rows = example3((200, 5000), p=4, k1s=(3, 4), n_tasks=4, repeats=2, n_boot=50)
    by = {(r["n"], r["k1"]): r for r in rows}
    for n in (200, 5000):
        assert by[(n, 4)]["span_error"] < 1e-9 and by[(n, 4)]["span_dim"] == 4
        assert by[(n, 3)]["span_error"] > 0.999 and by[(n, 3)]["span_dim"] == 3
        assert by[(n, 3)]["rho"] > 0.1  # a missing direction keeps ρ far from 0
    assert by[(5000, 4)]["rho"] < by[(200, 4)]["rho"] / 5
    assert by[(5000, 4)]["rho"] < 0.01
    assert by[(5000, 4)]["low"] <= by[(5000, 4)]["rho"] <= by[(5000, 4)]["high"]


def test_example3_gram_route_is_exact_with_noiseless_calibration_labels():
    rows = example3((50,), p=3, method="gram", calibration_noise=0.0, n_tasks=3, repeats=2)
    assert rows[0]["rho"] < 1e-20


# --------------------------------------------------------------------------- Example 4


def _basis_answers(values):
    bob = Module(np.asarray(values, dtype=float)[:, None], "stump")
    n = len(values)
    return np.stack([bob.query(np.eye(n)[i]).fitted for i in range(n)])


def test_example4_paper_table_order():
    order = tree_order_from_basis(_basis_answers([7, 1, 10, 5, 18, 9]))
    # [x2, x4, x1, x6, x3, x5] = [1, 5, 7, 9, 10, 18] in the paper (0-based here), up to reversal.
    assert order.tolist() in ([1, 3, 0, 5, 2, 4], [4, 2, 5, 0, 3, 1])


@settings(max_examples=25, deadline=None, derandomize=True)
@given(n=st.integers(3, 40), seed=st.integers(0, 10_000))
def test_basis_queries_reveal_the_order_of_bobs_data(n, seed):
    values = np.random.default_rng(seed).normal(size=n)
    order = tree_order_from_basis(_basis_answers(values))
    truth = np.argsort(values)
    assert np.array_equal(order, truth) or np.array_equal(order[::-1], truth)


def test_order_recovery_refuses_answers_of_other_learners():
    x = np.random.default_rng(0).uniform(size=(8, 1))
    deep = Module(x, DecisionTreeRegressor(max_depth=3))
    answers = np.stack([deep.query(np.eye(8)[i]).fitted for i in range(8)])
    with pytest.raises(InputValidationError, match="not those of a two-leaf tree"):
        tree_order_from_basis(answers)
    with pytest.raises(InputValidationError, match=r"must be an \(n, n\) array"):
        tree_order_from_basis(answers[:3])


def test_example4_rho_vanishes_with_stage_two_queries():
    rows = example4((20, 200), n_tasks=4, repeats=2, n_boot=50)
    by = {(r["n"], r["imitation"]): r for r in rows}
    assert all(r["order_recovered"] == 1.0 for r in rows)
    full = [by[(n, "stage I + II")] for n in (20, 200)]
    assert full[1]["rho"] < full[0]["rho"] and full[1]["rho"] < 0.02
    assert full[1]["data_error"] < 0.02
    assert full[0]["stage2_queries"] == 20 * 92
    assert by[(200, "stage I + marginal")]["rho"] < by[(20, "stage I + marginal")]["rho"]


# --------------------------------------------------------------------------- Examples 6 and 7


def test_laplace_release_noise_and_bounds():
    x = np.zeros((20000, 2))
    released, tau2 = laplace_release(x, alpha=2.0, bound=1.0, seed=0)
    assert tau2 == pytest.approx(8 / 4)
    assert np.var(released) == pytest.approx(tau2, rel=0.05)
    with pytest.raises(InputValidationError, match=r"must lie in \[-1, 1\]"):
        laplace_release(np.array([[1.5]]), alpha=1.0, bound=1.0)
    with pytest.raises(InvalidParameterError, match="'alpha' parameter of laplace_release"):
        laplace_release(x, alpha=0.0, bound=1.0)


def test_example6_debiased_imitation_vanishes_where_the_naive_one_does_not():
    rows = example6((300, 30000), p=2, n_tasks=4, repeats=2, n_boot=50)
    by = {(r["n"], r["imitation"]): r for r in rows}
    assert by[(30000, "debiased")]["rho"] < 0.02
    assert by[(30000, "debiased")]["rho"] < by[(300, "debiased")]["rho"]
    # Least squares on noisy features is attenuated: (τ²/(σ²+τ²))² = (0.5/0.8333)² = 0.36.
    assert by[(30000, "naive")]["rho"] == pytest.approx(0.36, abs=0.03)


def test_example7_released_feature_barely_lowers_rho():
    rows = example7((2000,), p=5, n_tasks=10, repeats=2, n_boot=50)
    by = {r["imitation"]: r for r in rows}
    assert by["nothing released"]["rho"] == pytest.approx(1.0)
    released = by["released feature"]
    assert 0.5 < released["rho"] < 1.0
    assert released["rho"] == pytest.approx(released["rho_theory"], abs=0.05)


# --------------------------------------------------------------------------- bad inputs


def test_example_parameters_are_validated():
    with pytest.raises(InvalidParameterError, match=r"'example' parameter.*3, 4, 6, 7. Got 5"):
        run_example(5)
    with pytest.raises(InvalidParameterError, match=r"'ns' parameter of example3.*\[6, inf\)"):
        example3((5,), p=5)
    with pytest.raises(InvalidParameterError, match=r"'k1s' parameter of example3.*Got 0"):
        example3((50,), k1s=(0,))
    with pytest.raises(InvalidParameterError, match="'ns' parameter of example4 must hold"):
        example4(())
    with pytest.raises(InvalidParameterError, match=r"'domain' parameter.*low < high"):
        example4((10,), domain=(1.0, 0.0))
    with pytest.raises(InvalidParameterError, match=r"'released' parameter of example7.*\[0, 4\]"):
        example7((50,), released=5)
    with pytest.raises(InvalidParameterError, match="'covariance' parameter of example3"):
        example3((50,), p=2, covariance=np.eye(3))
    with pytest.raises(InvalidParameterError, match=r"'k1' parameter of recover_span"):
        recover_span(Module(np.ones((5, 1))), 0)
    with pytest.raises(InvalidParameterError, match="at least one task"):
        module_privacy(Module(np.ones((5, 1))), ZeroImitation(), tasks=[], x_future=np.ones((2, 1)))


# --------------------------------------------------------------------------- CLI


def test_cli_example_prints_a_table_and_writes_json(privacy_cli, tmp_path):
    out = tmp_path / "rows.json"
    result, text = privacy_cli(
        "example", "--example", 7, "--n", "100,300", "--repeats", 1, "--tasks", 3, "--out", out
    )
    assert result.exit_code == 0, text
    assert "Example 7" in text and "released feature" in text
    rows = json.loads(out.read_text())
    assert [r["n"] for r in rows] == [100, 100, 300, 300]
    result, text = privacy_cli(
        "example", "--example", 3, "--n", 50, "--k1", "2,3", "--param", "p=3", "--repeats", 1
    )
    assert result.exit_code == 0, text
    assert "covariance" in text and "k1" in text


def test_cli_assisted_on_diabetes(privacy_cli, tmp_path):
    out = tmp_path / "assisted.json"
    result, text = privacy_cli("assisted", "--data", "diabetes", "--rounds", 3, "--out", out)
    assert result.exit_code == 0, text
    payload = json.loads(out.read_text())
    assert payload["alice"] == ["age", "sex", "bmi", "bp"] and len(payload["bob"]) == 6
    last = payload["rows"][-1]
    assert last["assisted"] < last["alice_alone"]


def test_cli_assisted_on_a_csv(privacy_cli, tmp_path):
    path = tmp_path / "d.csv"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=120)
    rows = [
        "a,b,c,target",
        *(",".join(f"{v:.6f}" for v in (*r, t)) for r, t in zip(x, y, strict=True)),
    ]
    path.write_text("\n".join(rows) + "\n")
    result, text = privacy_cli("assisted", "--data", path, "--alice-columns", "a", "--rounds", 4)
    assert result.exit_code == 0, text
    assert "Bob: b, c" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("example", "--example", 5), "must be one of 3, 4, 6, 7"),
        (("example", "--example", 6, "--param", "foo=1"), "has no parameter 'foo'"),
        (("example", "--example", 4, "--k1", "3"), "--k1 applies to Example 3 only"),
        (("example", "--example", 3, "--n", "10,x"), "comma-separated ints"),
        (("assisted", "--alice-columns", "age,nope"), "no column 'nope'"),
        (("assisted", "--rounds", 0), "'rounds' parameter"),
        (("assisted", "--data", "iris"), "--data must be"),
    ],
)
def test_cli_errors_are_one_clear_line(privacy_cli, args, message):
    result, text = privacy_cli(*args)
    assert result.exit_code == 2
    assert message in " ".join(text.split())
