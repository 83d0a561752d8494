"""KnockoffNets-adaptive: a stable bandit, budget and pool rules, determinism, and learning."""

from __future__ import annotations

import numpy as np
import pytest

from modelsteal.attacks import AttackState, build_recipe, extract
from modelsteal.attacks.adaptive_knockoff import (
    KnockoffAdaptive,
    RunningStandardizer,
    bandit_update,
    certainty_reward,
    diversity_reward,
    policy,
)
from modelsteal.attacks.recipes import knockoff_adaptive_orekondy_2019  # noqa: F401 (registers)
from modelsteal.errors import InvalidParameterError
from modelsteal.targets import FunctionTarget, TorchTarget

FAST = {"epochs": 2, "min_steps": 20}


# --- the bandit stays finite -----------------------------------------------------------------


@pytest.mark.parametrize("scale", [1e-300, 1e-12, 1.0, 1e12, 1e300])
def test_policy_stays_finite_and_normalised_under_extreme_rewards(scale):
    rng = np.random.default_rng(0)
    H = np.zeros(5)
    norm = RunningStandardizer()
    for _ in range(200):
        pi = policy(H)
        actions = rng.choice(5, size=16, p=pi)
        raw = scale * (actions == 2) + scale * rng.random(16)
        r = np.clip(norm.standardize(raw), -3, 3)
        H = bandit_update(H, actions, r - 0.0, pi, alpha=0.5)
        assert np.isfinite(H).all()
    pi = policy(H)
    assert np.isfinite(pi).all() and pi.sum() == pytest.approx(1.0)
    assert pi.argmax() == 2


def test_policy_handles_huge_preferences_and_exhausted_groups():
    H = np.array([1e300, -1e300, 0.0, 700.0, -800.0])
    pi = policy(H)
    assert np.isfinite(pi).all() and pi.sum() == pytest.approx(1.0) and pi[0] == 1.0
    # The favourite is exhausted: the max is taken over the rest, so nothing underflows to 0/0.
    pi = policy(H, np.array([False, True, True, True, True]))
    assert pi[0] == 0.0 and pi[3] == pytest.approx(1.0) and np.isfinite(pi).all()
    with pytest.raises(InvalidParameterError, match="no action is available"):
        policy(H, np.zeros(5, dtype=bool))


def test_bandit_update_with_non_finite_and_huge_advantages():
    pi = policy(np.zeros(3))
    H = bandit_update(
        np.zeros(3), np.array([0, 1, 2]), np.array([np.inf, np.nan, 1e308]), pi, alpha=1.0, clip=3
    )
    assert np.isfinite(H).all() and H.mean() == pytest.approx(0.0)
    assert H[2] > H[1]


def test_standardizer_matches_numpy_and_survives_overflow():
    norm = RunningStandardizer()
    data = np.random.default_rng(1).normal(3.0, 2.0, size=300)
    for chunk in np.split(data, 10):
        norm.update(chunk)
    assert norm.mean * norm.scale == pytest.approx(data.mean())
    assert norm.std * norm.scale == pytest.approx(data.std())
    huge = RunningStandardizer()
    z = huge.standardize(np.array([1e308, -1e308, 1e308]))
    assert np.isfinite(z).all()


def test_rewards():
    y = np.array([[0.7, 0.2, 0.1], [0.4, 0.4, 0.2]])
    np.testing.assert_allclose(certainty_reward(y), [0.5, 0.0])
    np.testing.assert_allclose(diversity_reward(y, np.array([0.5, 0.3, 0.2])), [0.2, 0.1])


# --- pool rules, budget, determinism ---------------------------------------------------------


def _blobs(n_per=60, k=4, dim=8, seed=0):
    """k well-separated Gaussian blobs; returns (pool, blob of each row)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 6, size=(k, dim))
    blob = np.repeat(np.arange(k), n_per)
    pool = (centres[blob] + rng.normal(0, 0.3, size=(len(blob), dim))).astype(np.float32)
    perm = rng.permutation(len(blob))
    return pool[perm], blob[perm]


def _blob_target(blob_of_row, pool, *, confident_blob=0, n_classes=4):
    """A target that is certain on one blob and nearly uniform elsewhere."""
    lookup = {row.tobytes(): b for row, b in zip(pool, blob_of_row, strict=True)}

    def f(x):
        out = np.full((len(x), n_classes), 1.0 / n_classes)
        for i, row in enumerate(x):
            b = lookup[np.asarray(row, dtype=np.float32).tobytes()]
            if b == confident_blob:
                out[i] = 0.01 / (n_classes - 1)
                out[i, i % n_classes] = 0.99
            else:
                out[i, i % n_classes] += 0.05
                out[i] /= out[i].sum()
        return out

    return FunctionTarget(f, input_shape=(pool.shape[1],), n_classes=n_classes)


def _drive(strategy, pool, target, steps, n, seed):
    """Run the strategy the way extract does: query each proposal, record it, go on."""
    state = AttackState(pool=pool, n_classes=target.n_classes, input_shape=pool.shape[1:])
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        p = strategy.propose(state, n, rng)
        state.used[p.pool_index] = True
        state.queried_x.append(p.x)
        state.responses.append(target.query(p.x))
    return state


def test_never_requeries_a_row_and_stops_at_the_pool():
    pool, blob = _blobs(n_per=25)
    target = _blob_target(blob, pool)
    strategy = KnockoffAdaptive(n_clusters=4, reward="certainty", alpha=2.0, pull_size=8)
    state = _drive(strategy, pool, target, steps=12, n=8, seed=0)
    chosen = np.concatenate([_rows(pool, x) for x in state.queried_x])
    assert len(chosen) == 96 and len(set(chosen.tolist())) == 96
    state = _drive(strategy, pool, target, steps=4, n=25, seed=0)  # 100 rows: the whole pool
    assert state.used.all()
    with pytest.raises(InvalidParameterError, match="0 unused rows but 1 queries"):
        strategy.propose(state, 1, np.random.default_rng(0))


def _rows(pool, x):
    index = {row.tobytes(): i for i, row in enumerate(pool)}
    return np.array([index[r.tobytes()] for r in x])


def test_preference_grows_for_the_rewarding_cluster():
    pool, blob = _blobs(n_per=150)
    target = _blob_target(blob, pool, confident_blob=1)
    strategy = KnockoffAdaptive(n_clusters=4, reward="certainty", alpha=0.1, pull_size=16)
    state = _drive(strategy, pool, target, steps=8, n=16, seed=0)  # 128 rows < 150 per blob
    run = state.memo["knockoff_adaptive"]
    # the k-means cluster that holds blob 1
    good = np.bincount(run["groups"][blob == 1]).argmax()
    mass = np.array(run["policy"])[:, good]
    assert mass[0] == pytest.approx(0.25)
    assert mass[-1] > 0.6 and mass[-1] > mass[len(mass) // 2] > mass[0]
    share = np.mean(np.concatenate(run["actions"][4:]) == good)
    assert share > 0.5  # random would give 0.25


def test_two_levels_learn_the_group_and_the_cluster_within_it():
    """Coarse labels pair the blobs {0, 1} and {2, 3}; fine_clusters=2 cuts each pair into its
    blobs. The target is certain on blob 1 only: the top level learns its pair, the pair's own
    bandit learns blob 1 over blob 0, and π stays a distribution over the leaves."""
    pool, blob = _blobs(n_per=150)
    target = _blob_target(blob, pool, confident_blob=1)
    pair = blob // 2
    strategy = KnockoffAdaptive(
        coarse_labels=pair, fine_clusters=2, reward="certainty", alpha=0.1, pull_size=16
    )
    state = _drive(strategy, pool, target, steps=10, n=16, seed=0)  # 160 rows
    run = state.memo["knockoff_adaptive"]
    leaves, parent = run["groups"], run["parent"]
    assert len(parent) == 4 and parent.tolist() == [0, 0, 1, 1]
    for leaf in range(4):  # each leaf is one blob, inside its pair
        assert len(set(blob[leaves == leaf].tolist())) == 1
        assert set(pair[leaves == leaf].tolist()) == {parent[leaf]}
    good = leaves[blob == 1][0]
    pis = np.array(run["policy"])
    np.testing.assert_allclose(pis.sum(axis=1), 1.0)
    np.testing.assert_allclose(pis[0], 0.25)
    assert run["H"][0] > run["H"][1]  # the pair holding blob 1
    sibling = 1 - good % 2 + 2 * (good // 2)
    assert run["H_leaf"][good] > run["H_leaf"][sibling]  # blob 1 over blob 0 within the pair
    assert pis[-1, good] > 0.5
    chosen = np.concatenate([_rows(pool, x) for x in state.queried_x])
    assert len(set(chosen.tolist())) == len(chosen)


def test_one_group_level_when_groups_are_small():
    from modelsteal.attacks.adaptive_knockoff import _split_groups

    pool, blob = _blobs(n_per=3, k=4)  # 3 rows per group, fine_clusters=5: kept whole
    leaves, parent = _split_groups(pool, blob, 5, 4, np.random.default_rng(0))
    np.testing.assert_array_equal(parent, [0, 1, 2, 3])
    np.testing.assert_array_equal(parent[leaves], blob)


def test_extract_within_budget_and_seeded(digits, digits_mlp):
    X, _ = digits
    target = TorchTarget(digits_mlp, input_shape=(64,))
    pool = X[800:1400]

    def run(seed):
        recipe = build_recipe("knockoff_adaptive", retrain_every=60, pull_size=16, **FAST)
        return extract(target, recipe, pool=pool, budget=150, seed=seed)

    a, b, c = run(0), run(0), run(1)
    assert a.queries == 150 and len(a.queried_x) == 150
    assert len(np.unique(a.queried_x, axis=0)) == 150
    np.testing.assert_array_equal(a.queried_x, b.queried_x)
    np.testing.assert_array_equal(
        a.info["knockoff_adaptive"]["H"], b.info["knockoff_adaptive"]["H"]
    )
    assert not np.array_equal(a.queried_x, c.queried_x)
    history = a.info["knockoff_adaptive"]
    assert len(history["policy"]) == 10  # 150 / 16 → 10 pulls
    assert "loss" in history["rewards"][-1]  # the substitute trained at 60 and 120 is used
    assert "loss" not in history["rewards"][0]


def test_coarse_labels_are_the_groups():
    pool, blob = _blobs(n_per=10)
    strategy = KnockoffAdaptive(coarse_labels=blob * 10, reward="certainty")
    target = _blob_target(blob, pool)
    state = _drive(strategy, pool, target, steps=2, n=5, seed=0)
    np.testing.assert_array_equal(state.memo["knockoff_adaptive"]["groups"], blob)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"reward": "entropy"}, "'reward' parameter of KnockoffAdaptive must be one of"),
        ({"alpha": 0.0}, "'alpha' parameter of KnockoffAdaptive must be a float in"),
        ({"pull_size": 0}, "'pull_size' parameter of KnockoffAdaptive must be an int"),
        ({"n_clusters": 1}, "'n_clusters' parameter of KnockoffAdaptive must be an int"),
        ({"fine_clusters": -1}, "'fine_clusters' parameter of KnockoffAdaptive must be an int"),
        ({"coarse_labels": np.zeros((2, 2))}, "'coarse_labels' parameter .* non-empty 1-d"),
    ],
)
def test_parameter_errors(kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        KnockoffAdaptive(**kwargs)


def test_run_time_errors():
    pool, _ = _blobs(n_per=2)
    state = AttackState(pool=pool, n_classes=4, input_shape=pool.shape[1:])
    rng = np.random.default_rng(0)
    with pytest.raises(InvalidParameterError, match="fewer than n_clusters=20"):
        KnockoffAdaptive(n_clusters=20).propose(state, 2, rng)
    with pytest.raises(InvalidParameterError, match="coarse_labels gives 3 groups but the pool"):
        KnockoffAdaptive(coarse_labels=[0, 1, 2]).propose(state, 2, rng)
    with pytest.raises(InvalidParameterError, match="'retrain_every' parameter of knockoff_adap"):
        build_recipe("knockoff_adaptive", retrain_every=0)
