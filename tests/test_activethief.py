"""ActiveThief: selections pick only unlabelled rows, k-center is the greedy core-set, the recipe
stays inside its budget."""

from __future__ import annotations

import numpy as np
import pytest

from modelsteal.attacks import AttackState, build_recipe, extract
from modelsteal.attacks.activethief import (
    SEEDINGS,
    SELECTIONS,
    ActiveThief,
    deepfool_distance,
    entropy_stop,
    kcenter_greedy,
)
from modelsteal.attacks.recipes import activethief_pal_2020  # noqa: F401  (registers)
from modelsteal.errors import InvalidParameterError
from modelsteal.models import build_model, predict_proba
from modelsteal.targets import TorchTarget

FAST = {"epochs": 2, "min_steps": 20}


@pytest.fixture(scope="module")
def setting(digits, digits_mlp):
    X, y = digits
    return TorchTarget(digits_mlp, input_shape=(64,)), X[800:1400], X[1400:], y[1400:]


@pytest.fixture(scope="module")
def weak_substitute(digits):
    """An untrained MLP: a substitute whose outputs vary over the pool."""
    return build_model("mlp", (64,), 10, seed=1, hidden=(16,))


def _state(pool, substitute=None, labelled=0):
    state = AttackState(pool=pool, n_classes=10, input_shape=(64,), domain=(0.0, 1.0))
    if labelled:
        state.used[:labelled] = True
        state.queried_x.append(pool[:labelled])
        state.responses.append(np.full((labelled, 10), 0.1))
    state.substitute = substitute
    return state


@pytest.mark.parametrize("seeding", SEEDINGS)
@pytest.mark.parametrize("selection", SELECTIONS)
def test_every_selection_picks_unlabelled_rows_once(selection, seeding, setting, weak_substitute):
    _, pool, _, _ = setting
    pool = pool[:150]
    strategy = ActiveThief(selection=selection, seeding=seeding, n_clusters=4)
    rng = np.random.default_rng(0)
    state = _state(pool)
    seen: set[int] = set()
    for step, n in enumerate([20, 20, 17, 30, 0, 63]):
        if step == 2:
            state.substitute = weak_substitute
        proposal = strategy.propose(state, n, rng)
        idx = proposal.pool_index
        assert len(idx) == n == len(proposal.x)
        assert len(set(idx.tolist())) == n
        assert not state.used[idx].any()
        assert seen.isdisjoint(idx.tolist())
        np.testing.assert_array_equal(proposal.x, pool[idx])
        seen.update(idx.tolist())
        state.used[idx] = True
        state.queried_x.append(proposal.x)
        state.responses.append(np.full((n, 10), 0.1))
    assert state.used.all()
    with pytest.raises(InvalidParameterError, match="0 unused rows but 1 queries"):
        strategy.propose(state, 1, rng)


def _brute_kcenter(points, centres, m):
    chosen: list[int] = []
    for _ in range(m):
        covered = np.concatenate([centres, points[chosen]]) if chosen else centres
        best, best_d = -1, -1.0
        for i, p in enumerate(points):
            if i in chosen:
                continue
            d = min(np.linalg.norm(p - c) for c in covered) if len(covered) else np.inf
            if d > best_d:
                best, best_d = i, d
        chosen.append(best)
    return chosen


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kcenter_matches_a_brute_force_reference(seed):
    rng = np.random.default_rng(seed)
    points = rng.dirichlet(np.ones(4), size=40)
    centres = rng.dirichlet(np.ones(4), size=5)
    assert kcenter_greedy(points, centres, 12).tolist() == _brute_kcenter(points, centres, 12)


def test_kcenter_selection_uses_labelled_outputs_as_centres(setting, weak_substitute):
    _, pool, _, _ = setting
    pool = pool[:80]
    state = _state(pool, weak_substitute, labelled=30)
    picked = ActiveThief(selection="kcenter").propose(state, 7, np.random.default_rng(0))
    probs = predict_proba(weak_substitute, pool)
    expected = 30 + np.array(_brute_kcenter(probs[30:], probs[:30], 7))
    assert picked.pool_index.tolist() == expected.tolist()


class FixedProbs:
    """Stands in for a substitute; predict_proba is patched to return hand-made rows."""


HAND = np.array(
    [
        [0.90, 0.05, 0.05],  # confident
        [0.40, 0.35, 0.25],  # least confident, high entropy, small margin
        [0.50, 0.495, 0.005],  # smallest margin
        [0.34, 0.33, 0.33],  # highest entropy, least confident
        [0.70, 0.20, 0.10],
    ]
)


@pytest.mark.parametrize(
    ("selection", "expected"),
    [("least_confidence", [3, 1]), ("margin", [2, 3]), ("entropy", [3, 1])],
)
def test_uncertainty_selections_pick_the_expected_rows(selection, expected, monkeypatch):
    import modelsteal.attacks.activethief as at

    pool = np.arange(5, dtype=np.float32)[:, None]
    monkeypatch.setattr(at, "predict_proba", lambda model, x: HAND[x[:, 0].astype(int)])
    state = AttackState(pool=pool, n_classes=3, input_shape=(1,))
    state.substitute = FixedProbs()
    picked = ActiveThief(selection=selection).propose(state, 2, np.random.default_rng(0))
    assert picked.pool_index.tolist() == expected
    run = state.memo["activethief"]
    h = -(HAND[expected] * np.log(HAND[expected])).sum(axis=1).mean()
    assert run["batch_entropy"] == [pytest.approx(h)]
    assert run["queries"] == [0]


def test_uniform_balances_predicted_labels(monkeypatch):
    import modelsteal.attacks.activethief as at

    probs = np.eye(3)[[0] * 10 + [1] * 3 + [2] * 2] * 0.8 + 0.2 / 3
    monkeypatch.setattr(at, "predict_proba", lambda model, x: probs[x[:, 0].astype(int)])
    state = AttackState(
        pool=np.arange(15, dtype=np.float32)[:, None], n_classes=3, input_shape=(1,)
    )
    state.substitute = FixedProbs()
    picked = ActiveThief(selection="uniform").propose(state, 6, np.random.default_rng(0))
    labels = probs[picked.pool_index].argmax(axis=1)
    assert np.bincount(labels, minlength=3).tolist() == [2, 2, 2]


@pytest.mark.parametrize(
    ("history", "alpha", "expected"),
    [
        ([], 0.1, False),
        ([1.0], 0.1, False),
        ([1.0, 0.5], 0.1, False),
        ([1.0, 0.5, 0.45], 0.05, True),
        ([1.0, 0.5, 0.45], 0.01, False),
        ([0.2, 0.3], 0.1, True),  # |Δ| is used: a rise counts too
    ],
)
def test_entropy_stop(history, alpha, expected):
    assert entropy_stop(history, alpha) is expected


def test_stop_at_is_recorded_when_the_rule_fires(monkeypatch):
    import modelsteal.attacks.activethief as at

    pool = np.arange(5, dtype=np.float32)[:, None]
    monkeypatch.setattr(at, "predict_proba", lambda model, x: HAND[x[:, 0].astype(int)])
    state = AttackState(pool=pool, n_classes=3, input_shape=(1,))
    strategy = ActiveThief(selection="random", alpha=10.0)
    for _ in range(3):
        state.substitute = FixedProbs()  # a new substitute: a new round
        picked = strategy.propose(state, 1, np.random.default_rng(0))
        state.used[picked.pool_index] = True
        state.queried_x.append(picked.x)
    run = state.memo["activethief"]
    assert len(run["batch_entropy"]) == 3
    assert run["stop_at"] == 2


def test_dfal_distance_is_small_near_the_boundary(weak_substitute, setting):
    _, pool, _, _ = setting
    d = deepfool_distance(weak_substitute, pool[:40], domain=(0.0, 1.0))
    assert d.shape == (40,) and np.all(d >= 0) and np.isfinite(d).all()
    probs = predict_proba(weak_substitute, pool[:40])
    top2 = np.sort(probs, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    # rows the substitute is least sure about are nearer its boundary (rank correlation > 0)
    assert np.corrcoef(np.argsort(np.argsort(d)), np.argsort(np.argsort(margin)))[0, 1] > 0


@pytest.mark.parametrize("selection", ["entropy+kcenter", "dfal", "random"])
def test_selection_is_seeded(selection, setting, weak_substitute):
    _, pool, _, _ = setting
    runs = []
    for _ in range(2):
        state = _state(pool[:120], weak_substitute, labelled=20)
        strategy = ActiveThief(selection=selection)
        runs.append(strategy.propose(state, 15, np.random.default_rng(3)).pool_index.tolist())
    assert runs[0] == runs[1]


def test_rounds_follow_the_budget():
    assert ActiveThief().rounds(1) == [1]
    assert ActiveThief().rounds(100) == [10, 19, 28, 37, 46, 55, 64, 73, 82, 91, 100]
    assert ActiveThief(initial_seed=30, k=25).rounds(100) == [30, 55, 80, 100]
    assert ActiveThief(initial_seed=500).rounds(100) == [100]


@pytest.mark.parametrize("budget", [1, 37, 300])
def test_recipe_runs_on_digits_inside_its_budget(budget, setting):
    target, pool, X_test, y_test = setting
    recipe = build_recipe("activethief", selection="entropy+kcenter", **FAST)
    result = extract(target, recipe, pool=pool, budget=budget, seed=0, eval_x=X_test, eval_y=y_test)
    assert result.queries == len(result.queried_x) == budget
    assert len(np.unique(pool, axis=0)) == len(pool)  # so distinct rows mean distinct queries
    assert len(np.unique(result.queried_x, axis=0)) == budget
    if budget == 300:
        assert result.history[-1]["accuracy"] > 0.5
        assert len(result.info["activethief"]["batch_entropy"]) == 10


def test_the_stopping_rule_ends_the_run(setting):
    target, pool, X_test, y_test = setting
    # alpha = 10 exceeds any change of mean entropy (≤ log 10): the rule fires at the first check
    recipe = build_recipe("activethief", selection="entropy", alpha=10.0, **FAST)
    result = extract(
        target, recipe, pool=pool, budget=300, seed=0, schedule=[300], eval_x=X_test, eval_y=y_test
    )
    run = result.info["activethief"]
    assert run["stop_at"] == result.queries < 300
    assert "entropy rule" in result.info["stopped"]
    assert result.history[-1]["queries"] == result.queries
    assert len(result.queried_x) == result.queries


def test_recipe_is_deterministic(setting):
    target, pool, _, _ = setting
    recipe = build_recipe("activethief_pal_2020", selection="margin", seeding="cluster", **FAST)
    a = extract(target, recipe, pool=pool, budget=60, seed=4)
    b = extract(target, recipe, pool=pool, budget=60, seed=4)
    np.testing.assert_array_equal(a.queried_x, b.queried_x)


def test_errors():
    with pytest.raises(InvalidParameterError, match="'selection' parameter.*'entropy\\+kcenter'"):
        ActiveThief(selection="bald")
    with pytest.raises(InvalidParameterError, match="'seeding' parameter.*'kmeans_input'"):
        build_recipe("activethief", seeding="coreset")
    with pytest.raises(InvalidParameterError, match="'k' parameter of ActiveThief"):
        ActiveThief(k=0)
    with pytest.raises(InvalidParameterError, match="'alpha' parameter of entropy_stop"):
        entropy_stop([1.0, 0.5], -1.0)
