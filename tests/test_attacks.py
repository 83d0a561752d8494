"""Every strategy and recipe stays inside its budget; extraction is seeded and really works."""

from __future__ import annotations

import numpy as np
import pytest

from modelsteal.attacks import (
    RECIPES,
    STRATEGIES,
    AttackState,
    build_recipe,
    extract,
)
from modelsteal.errors import InvalidParameterError, QueryBudgetExceeded, UnknownNameError
from modelsteal.targets import FunctionTarget, TorchTarget, budgeted, label_only

FAST = {"epochs": 2, "min_steps": 20}


@pytest.fixture(scope="module")
def setting(digits, digits_mlp):
    X, y = digits
    target = TorchTarget(digits_mlp, input_shape=(64,))
    return target, X[800:1400], X[1400:], y[1400:]


class CountingTarget:
    """A target that records every row that reaches it."""

    def __init__(self, inner):
        self.inner, self.rows = inner, 0
        self.n_classes, self.input_shape = inner.n_classes, inner.input_shape

    def query(self, x):
        self.rows += len(x)
        return self.inner.query(x)


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_strategy_proposes_unused_rows_only(name, setting):
    _, pool, _, _ = setting
    state = AttackState(pool=pool, n_classes=10, input_shape=(64,))
    rng = np.random.default_rng(0)
    seen: set[int] = set()
    for _ in range(5):
        proposal = STRATEGIES.get(name)().propose(state, 50, rng)
        assert proposal.x.shape == (50, 64)
        if proposal.pool_index is not None:
            assert not state.used[proposal.pool_index].any()
            assert seen.isdisjoint(proposal.pool_index.tolist())
            seen.update(proposal.pool_index.tolist())
            state.used[proposal.pool_index] = True


@pytest.mark.parametrize("name", RECIPES.names())
@pytest.mark.parametrize("budget", [1, 37, 300])
def test_every_recipe_stays_inside_its_budget(name, budget, setting):
    target, pool, _, _ = setting
    counter = CountingTarget(target)
    recipe = build_recipe(name, **FAST)
    cost = recipe.querier.cost  # rows one input spends (several for smoothing and m-QPI)
    if budget < cost:
        with pytest.raises(InvalidParameterError, match="cannot pay for one input"):
            extract(counter, recipe, pool=pool, budget=budget, seed=0)
        assert counter.rows == 0
        return
    result = extract(
        counter,
        recipe,
        pool=pool,
        budget=budget,
        seed=0,
        schedule=sorted({max(cost, budget // 3), budget}),
    )
    assert counter.rows == result.queries == (budget // cost) * cost <= budget
    assert len(result.queried_x) == len(result.responses) == budget // cost


def test_an_outer_budget_stops_the_attack_at_exactly_that_budget(setting):
    target, pool, test_x, test_y = setting
    outer = budgeted(target, 100)
    result = extract(
        outer,
        build_recipe("knockoff", **FAST),
        pool=pool,
        budget=300,
        seed=0,
        schedule=[50, 200, 300],
        eval_x=test_x,
        eval_y=test_y,
        eval_target=target.query(test_x),
    )
    assert outer.spent == result.queries == 100 and len(result.queried_x) == 100
    assert [h["queries"] for h in result.history] == [50, 100]
    assert "budget is 100 rows" in result.info["stopped"]
    with pytest.raises(QueryBudgetExceeded):
        outer.query(test_x[:1])


def test_same_seed_same_substitute(setting):
    target, pool, test_x, test_y = setting

    def run(seed):
        r = extract(
            target,
            build_recipe("knockoff", **FAST),
            pool=pool,
            budget=120,
            seed=seed,
            eval_x=test_x,
            eval_y=test_y,
        )
        return r.as_target().query(test_x), r

    (a, ra), (b, rb), (c, _) = run(3), run(3), run(4)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ra.queried_x, rb.queried_x)
    assert ra.history[-1]["fidelity"] == rb.history[-1]["fidelity"]
    assert not np.array_equal(a, c)


def test_knockoff_copies_a_digits_target(setting):
    target, pool, test_x, test_y = setting
    result = extract(
        target,
        build_recipe("knockoff"),
        pool=pool,
        budget=500,
        seed=0,
        schedule=[20, 500],
        eval_x=test_x,
        eval_y=test_y,
    )
    first, last = result.history
    assert [h["queries"] for h in result.history] == [20, 500]
    assert last["fidelity"] > 0.85 and last["fidelity"] > first["fidelity"]
    assert 0.0 <= last["accuracy"] <= 1.0


def test_label_only_target_trains_on_hard_labels(setting):
    target, pool, test_x, _ = setting
    result = extract(
        label_only(target),
        build_recipe("knockoff", **FAST),
        pool=pool,
        budget=60,
        seed=0,
        eval_x=test_x,
    )
    assert set(np.unique(result.responses)) == {0.0, 1.0}
    hard = build_recipe("knockoff", hard_labels=True)
    soft = target.query(test_x[:5])
    np.testing.assert_array_equal(
        hard.recovery(soft, test_x[:5]).argmax(axis=1), soft.argmax(axis=1)
    )
    assert set(np.unique(hard.recovery(soft, test_x[:5]))) == {0.0, 1.0}


def test_extract_errors(setting):
    target, pool, _, _ = setting
    recipe = build_recipe("knockoff", **FAST)
    with pytest.raises(
        InvalidParameterError, match="attacker pool has 600 rows, fewer than the 700 inputs"
    ):
        extract(target, recipe, pool=pool, budget=700, seed=0)
    with pytest.raises(
        InvalidParameterError, match="'schedule' parameter of extract must not go past"
    ):
        extract(target, recipe, pool=pool, budget=100, seed=0, schedule=[50, 200])
    with pytest.raises(
        InvalidParameterError, match=r"'budget' parameter of extract must be an int in \[1, inf\)"
    ):
        extract(target, recipe, pool=pool, budget=0, seed=0)
    with pytest.raises(InvalidParameterError, match="seed is required"):
        extract(target, recipe, pool=pool, budget=10, seed=None)
    with pytest.raises(
        UnknownNameError, match="Unknown recipe 'knockof'.*Known recipes: .*knockoff"
    ):
        build_recipe("knockof")
    other = FunctionTarget(lambda x: np.full((len(x), 3), 1 / 3), n_classes=3, input_shape=(5,))
    with pytest.raises(Exception, match=r"expected inputs of shape \(n, 5\)"):
        extract(other, recipe, pool=pool, budget=10, seed=0)


def test_recipe_rounds_retrain_without_evaluating(setting):
    from dataclasses import replace

    target, pool, test_x, test_y = setting
    seen_substitutes = []

    class Watching:
        name = "watching"

        def propose(self, state, n, rng):
            seen_substitutes.append((state.n_queried, state.substitute is not None))
            idx = rng.choice(state.unused, size=n, replace=False)
            from modelsteal.attacks import Proposal

            return Proposal(x=state.pool[idx], pool_index=idx)

    recipe = replace(
        build_recipe("knockoff", **FAST), strategy=Watching(), rounds=lambda b: [b // 4, b // 2]
    )
    result = extract(
        target, recipe, pool=pool, budget=80, seed=0, schedule=[80], eval_x=test_x, eval_y=test_y
    )
    assert [h["queries"] for h in result.history] == [80]
    assert seen_substitutes == [(0, False), (20, True), (40, True)]


def test_a_querier_that_costs_several_rows_stays_inside_the_budget(setting):
    from dataclasses import dataclass, replace

    target, pool, _, _ = setting

    @dataclass(frozen=True)
    class Thrice:
        cost: int = 3

        def ask(self, oracle, x, state, rng):
            return np.mean([oracle.query(x) for _ in range(3)], axis=0)

    counter = CountingTarget(target)
    recipe = replace(build_recipe("knockoff", **FAST), querier=Thrice())
    result = extract(counter, recipe, pool=pool, budget=100, seed=0, schedule=[50, 100])
    assert counter.rows == result.queries == 99  # 33 inputs, 3 rows each
    assert len(result.queried_x) == 33
    assert [h["queries"] for h in result.history] == [48, 99]
    with pytest.raises(InvalidParameterError, match="cannot pay for one input at 3 rows each"):
        extract(target, recipe, pool=pool, budget=2, seed=0)
