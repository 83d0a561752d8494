"""Assisted learning: Stage I residual exchange, Stage II summed prediction, and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LinearRegression
from sklearn.tree import DecisionTreeRegressor

from modelsteal.errors import InputValidationError, InvalidParameterError
from modelsteal.privacy import (
    AssistedLearning,
    Module,
    SingleParty,
    assisted_curve,
    make_learner,
    make_vertical_task,
)


def _split(kind: str, n: int = 1200, seed: int = 0):
    xa, xb, y = make_vertical_task(n, kind=kind, seed=seed)
    half = n // 2
    return (xa[:half], xb[:half], y[:half]), (xa[half:], xb[half:], y[half:])


def test_linear_assisted_reaches_the_oracle_and_beats_alice_alone():
    train, test = _split("linear")
    rows = assisted_curve(*train, *test, learner="linear", rounds=8)
    last = rows[-1]
    assert last["assisted"] == pytest.approx(last["oracle"], rel=0.01)
    assert last["alice_alone"] > 2 * last["oracle"]
    assert last["oracle"] < last["baseline"]
    # More rounds never hurt the linear protocol on its training data (back-fitting).
    assert [r["train_mse"] for r in rows] == sorted((r["train_mse"] for r in rows), reverse=True)
    assert rows[0]["assisted"] > rows[-1]["assisted"]


def test_linear_assisted_converges_to_least_squares_on_all_columns():
    (xa, xb, y), (ta, tb, _) = _split("linear", n=400)
    model = AssistedLearning("linear", "linear", rounds=60).fit(xa, xb, y)
    oracle = LinearRegression().fit(np.hstack([xa, xb]), y)
    np.testing.assert_allclose(
        model.predict(ta, tb), oracle.predict(np.hstack([ta, tb])), rtol=1e-6, atol=1e-6
    )


def test_tree_assisted_gets_close_to_the_oracle_on_an_additive_task():
    train, test = _split("nonlinear", n=2000)
    rows = assisted_curve(*train, *test, learner="tree", rounds=10, learning_rate=0.5)
    last = rows[-1]
    assert last["assisted"] < 1.1 * last["oracle"]
    assert last["assisted"] < 0.7 * last["alice_alone"]


def test_a_cross_party_interaction_keeps_trees_away_from_the_oracle():
    # f_A(x_A) + f_B(x_B) cannot hold x_A1 * x_B1: assisted learning stays above the oracle.
    xa, xb, y = make_vertical_task(2000, kind="nonlinear", interaction=3.0, seed=0)
    rows = assisted_curve(
        xa[:1000],
        xb[:1000],
        y[:1000],
        xa[1000:],
        xb[1000:],
        y[1000:],
        learner="tree",
        rounds=10,
        learning_rate=0.5,
    )
    assert rows[-1]["assisted"] > 1.5 * rows[-1]["oracle"]


@settings(max_examples=15, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 10_000),
    p_alice=st.integers(1, 4),
    p_bob=st.integers(1, 4),
    learner=st.sampled_from(["linear", "tree", "stump"]),
    lr=st.sampled_from([1.0, 0.3]),
)
def test_training_error_never_increases(seed, p_alice, p_bob, learner, lr):
    xa, xb, y = make_vertical_task(80, p_alice=p_alice, p_bob=p_bob, kind="nonlinear", seed=seed)
    model = AssistedLearning(learner, learner, rounds=4, learning_rate=lr, seed=seed)
    model.fit(xa, xb, y)
    mse = [float(np.var(y)), *model.train_mse_]
    assert np.all(np.diff(mse) <= 1e-9)
    # The last message is Bob's residual: y minus the Stage II prediction on the training rows.
    np.testing.assert_allclose(model.messages_[-1], y - model.predict(xa, xb), atol=1e-9)
    assert len(model.messages_) == 8 and len(model.alice_models_) == 4


def test_staged_predict_and_rounds():
    (xa, xb, y), (ta, tb, _) = _split("nonlinear", n=300)
    model = AssistedLearning("tree", "stump", rounds=3, seed=1).fit(xa, xb, y)
    staged = list(model.staged_predict(ta, tb))
    assert len(staged) == 3
    for k in (1, 2, 3):
        np.testing.assert_array_equal(model.predict(ta, tb, rounds=k), staged[k - 1])
    np.testing.assert_array_equal(model.predict(ta, tb), staged[-1])
    solo = SingleParty("linear", rounds=3).fit(xa, y)
    assert len(list(solo.staged_predict(ta))) == 3


def test_learners_by_name_or_estimator_and_seeds():
    assert isinstance(make_learner("linear"), LinearRegression)
    assert make_learner("tree").max_depth == 3 and make_learner("stump").max_depth == 1
    given_tree = DecisionTreeRegressor(max_depth=2)
    made = make_learner(given_tree, seed=7)
    assert made is not given_tree and made.random_state == 7 and given_tree.random_state is None
    (xa, xb, y), (ta, tb, _) = _split("nonlinear", n=300)
    a = AssistedLearning(given_tree, "tree", rounds=2, seed=3).fit(xa, xb, y).predict(ta, tb)
    b = AssistedLearning(given_tree, "tree", rounds=2, seed=3).fit(xa, xb, y).predict(ta, tb)
    np.testing.assert_array_equal(a, b)
    assert not hasattr(given_tree, "tree_")  # the estimator passed in is never fitted


def test_module_answers_stage_one_and_stage_two_queries():
    x = np.random.default_rng(0).normal(size=(50, 3))
    bob = Module(x, LinearRegression(fit_intercept=False))
    y = np.random.default_rng(1).normal(size=50)
    answer = bob.query(y)
    proj = x @ np.linalg.lstsq(x, y, rcond=None)[0]
    np.testing.assert_allclose(answer.fitted, proj, atol=1e-10)  # Stage I: P_X y
    answer.predict(x[:7])
    assert bob.stage1_queries == 1 and answer.stage2_queries == 7


def test_make_vertical_task_is_seeded():
    a = make_vertical_task(50, p_alice=2, p_bob=3, seed=4)
    b = make_vertical_task(50, p_alice=2, p_bob=3, seed=4)
    assert a[0].shape == (50, 2) and a[1].shape == (50, 3) and a[2].shape == (50,)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)


# --------------------------------------------------------------------------- bad inputs


@pytest.fixture
def data():
    return make_vertical_task(40, p_alice=2, p_bob=2, seed=0)


def test_mismatched_rows_are_refused(data):
    xa, xb, y = data
    with pytest.raises(InputValidationError, match=r"x_bob has 39 rows but y has 40.*same order"):
        AssistedLearning().fit(xa, xb[:-1], y)
    with pytest.raises(InputValidationError, match=r"x_alice has 40 rows but y has 41"):
        AssistedLearning().fit(xa, xb, np.append(y, 0.0))


def test_nan_and_shapes_are_refused(data):
    xa, xb, y = data
    bad = xb.copy()
    bad[[3, 5], 0] = np.nan
    with pytest.raises(InputValidationError, match=r"x_bob must be finite; rows \[3, 5\]"):
        AssistedLearning().fit(xa, bad, y)
    y_nan = y.copy()
    y_nan[2] = np.inf
    with pytest.raises(InputValidationError, match=r"y must be finite; entries \[2\]"):
        AssistedLearning().fit(xa, xb, y_nan)
    with pytest.raises(InputValidationError, match=r"x_alice must be a 2-D.*reshape\(-1, 1\)"):
        AssistedLearning().fit(xa[:, 0], xb, y)
    with pytest.raises(InputValidationError, match=r"1-D \(n,\) label vector.*y.ravel\(\)"):
        AssistedLearning().fit(xa, xb, y[:, None])
    with pytest.raises(InputValidationError, match="must be numeric"):
        AssistedLearning().fit(xa.astype(str), xb, y)


@pytest.mark.parametrize("rounds", [0, -1, 2.5, True])
def test_rounds_below_one_are_refused(data, rounds):
    with pytest.raises(
        InvalidParameterError,
        match=r"The 'rounds' parameter of AssistedLearning must be an int in \[1, inf\)",
    ):
        AssistedLearning(rounds=rounds).fit(*data)


def test_bad_parameters_and_misuse(data):
    xa, xb, y = data
    with pytest.raises(InvalidParameterError, match=r"'learner' parameter.*'linear', 'tree'"):
        AssistedLearning("forest").fit(xa, xb, y)
    with pytest.raises(InvalidParameterError, match=r"'learning_rate' parameter.*\(0, 1\]"):
        AssistedLearning(learning_rate=0.0).fit(xa, xb, y)
    with pytest.raises(InvalidParameterError, match="not fitted yet"):
        AssistedLearning().predict(xa, xb)
    model = AssistedLearning(rounds=2).fit(xa, xb, y)
    with pytest.raises(InputValidationError, match="x_bob has 1 columns but the model was fitted"):
        model.predict(xa, xb[:, :1])
    with pytest.raises(InvalidParameterError, match=r"'rounds' parameter.*\[1, 2\]"):
        model.predict(xa, xb, rounds=3)
    with pytest.raises(InputValidationError, match="y has 3 entries but the data have 40 rows"):
        Module(xa).query(y[:3])
