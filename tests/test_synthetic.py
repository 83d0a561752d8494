"""JBDA and JBDA-TR: round sizes as the papers describe, points inside the domain and the ε-ball,
targets other than the oracle's label, budgets kept, seeded determinism, teaching errors."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import modelsteal.attacks.recipes.jbda_papernot_2017
import modelsteal.attacks.recipes.jbda_tr_juuti_2019  # noqa: F401  (registers the recipes)
from modelsteal.attacks import AttackState, build_recipe, extract
from modelsteal.attacks.synthetic import (
    JBDA,
    JBDATR,
    UniformNoise,
    jacobian_step,
    jbda_rounds,
    random_other_classes,
    targeted_ifgsm,
)
from modelsteal.errors import InvalidParameterError
from modelsteal.models import predict_proba
from modelsteal.targets import TorchTarget

DOMAIN = (0.0, 1.0)
FAST = {"epochs": 2, "min_steps": 20}
SMALL = {"seed_size": 20, "reservoir_after": 2, "reservoir_size": 15}


@pytest.fixture(scope="module")
def target(digits_mlp):
    return TorchTarget(digits_mlp, input_shape=(64,))


@pytest.fixture(scope="module")
def pool(digits):
    return digits[0][800:1400]


class CountingTarget:
    """A target that records every row that reaches it."""

    def __init__(self, inner):
        self.inner, self.rows = inner, 0
        self.n_classes, self.input_shape = inner.n_classes, inner.input_shape

    def query(self, x):
        self.rows += len(x)
        return self.inner.query(x)


def simulate(strategy, target, pool, budget, *, batch, seed=0):
    """Run ``strategy`` as extract would, but with the target itself as a fixed substitute
    (no training), proposing at most ``batch`` rows per call and never across a round's end."""
    state = AttackState(pool=pool, n_classes=10, input_shape=(64,), domain=DOMAIN)
    state.substitute = target.module
    rng = np.random.default_rng(seed)
    ends = strategy.rounds(budget)
    for end in ends:
        while state.n_queried < end:
            proposal = strategy.propose(state, min(batch, end - state.n_queried), rng)
            assert len(proposal.x) <= min(batch, end - state.n_queried)
            if proposal.pool_index is not None:
                state.used[proposal.pool_index] = True
            state.queried_x.append(proposal.x)
            state.responses.append(target.query(proposal.x))
    return state, ends


# --- round structure -------------------------------------------------------------------------


def test_rounds_double_then_add_kappa_as_in_papernot():
    # 150 seeds, σ = 3 doubling rounds, then κ = 400 per round (Papernot et al. §6).
    ends = jbda_rounds(2400, 150)
    assert ends == [150, 300, 600, 1200, 1600, 2000, 2400]
    assert np.diff([0, *ends]).tolist() == [150, 150, 300, 600, 400, 400, 400]


def test_last_round_is_truncated_to_the_budget():
    assert jbda_rounds(1000, 150) == [150, 300, 600, 1000]
    assert jbda_rounds(100, 150) == [100]
    assert jbda_rounds(150, 150) == [150]


@settings(max_examples=60, deadline=None)
@given(
    budget=st.integers(1, 5000),
    seed_size=st.integers(1, 300),
    sigma=st.integers(0, 6),
    kappa=st.integers(1, 500),
)
def test_rounds_are_increasing_and_end_at_the_budget(budget, seed_size, sigma, kappa):
    ends = jbda_rounds(budget, seed_size, reservoir_after=sigma, reservoir_size=kappa)
    sizes = np.diff([0, *ends])
    assert ends[-1] == budget and (sizes > 0).all()
    total = 0
    for r, size in enumerate(sizes[:-1]):  # every round but the (possibly cut) last one
        expected = seed_size if r == 0 else (total if r <= sigma else min(kappa, total))
        assert size == expected
        total += size
    assert sizes[-1] <= (seed_size if len(sizes) == 1 else max(total, 1))


# --- JBDA ------------------------------------------------------------------------------------


def test_jbda_step_sign_flips_every_tau_rounds():
    strategy = JBDA(step_size=0.1, period=3)
    assert [strategy.step_at(rho) for rho in range(7)] == pytest.approx(
        [0.1, 0.1, 0.1, -0.1, -0.1, -0.1, 0.1]
    )


@pytest.mark.parametrize("batch", [7, 1000])
def test_jbda_grows_the_seed_set_by_jacobian_steps(batch, target, pool):
    strategy = JBDA(**SMALL, period=1)  # sign flips every round: both directions are checked
    state, ends = simulate(strategy, target, pool, 100, batch=batch)
    assert ends == [20, 40, 80, 95, 100]  # doubling for σ = 2 rounds, then κ = 15, last cut
    X, y = state.inputs(), state.answers().argmax(axis=1)
    assert len(X) == 100
    assert np.isin(X[:20], pool).all(axis=1).all()  # round 0: natural seed rows
    assert ((X >= 0) & (X <= 1)).all()
    for r, (start, end) in enumerate(pairwise(ends[:3]), start=1):
        parents = np.arange(end - start)  # a plain round augments all of S in order
        expected = jacobian_step(
            target.module,
            X[parents],
            y[parents],
            step_size=strategy.step_at(r - 1),
            domain=DOMAIN,
        )
        np.testing.assert_array_equal(X[start:end], expected)
    # Reservoir rounds: κ distinct parents from S, each new point one λ-step away from its parent.
    for start, end in pairwise(ends[2:]):
        new = X[start:end]
        dist = np.abs(new[:, None, :] - X[None, :start, :]).max(axis=2)
        assert (dist.min(axis=1) <= 0.1 + 1e-6).all()
        assert len(np.unique(new, axis=0)) == len(new)


def test_jacobian_step_moves_along_the_labels_logit(target, pool):
    x, labels = pool[:50], target.query(pool[:50]).argmax(axis=1)
    up = jacobian_step(target.module, x, labels, step_size=0.05)
    down = jacobian_step(target.module, x, labels, step_size=-0.05)
    with torch.no_grad():
        logit = lambda a: target.module(torch.from_numpy(a))[np.arange(50), labels].numpy()  # noqa: E731
        assert (logit(up) > logit(x)).all() and (logit(down) < logit(x)).all()
    assert np.abs(up - x).max() == pytest.approx(0.05)


# --- JBDA-TR ---------------------------------------------------------------------------------


@given(
    labels=st.lists(st.integers(0, 9), min_size=1, max_size=200),
    seed=st.integers(0, 2**16),
)
def test_random_targets_are_never_the_label(labels, seed):
    labels = np.array(labels)
    targets = random_other_classes(labels, 10, np.random.default_rng(seed))
    assert (targets != labels).all() and targets.min() >= 0 and targets.max() <= 9


def test_random_targets_cover_every_other_class():
    targets = random_other_classes(np.full(2000, 3), 10, np.random.default_rng(0))
    assert sorted(set(targets.tolist())) == [0, 1, 2, 4, 5, 6, 7, 8, 9]


def test_targeted_ifgsm_moves_towards_the_target_inside_the_ball(target, pool):
    x = pool[:100]
    labels = target.query(x).argmax(axis=1)
    t = random_other_classes(labels, 10, np.random.default_rng(0))
    out = targeted_ifgsm(target.module, x, t, epsilon=0.3, step_size=0.05, n_iter=10, domain=DOMAIN)
    assert np.abs(out - x).max() <= 0.3 + 1e-6 and out.min() >= 0 and out.max() <= 1
    before = target.query(x)[np.arange(100), t]
    after = target.query(out)[np.arange(100), t]
    assert (after >= before).mean() > 0.95 and (target.query(out).argmax(axis=1) == t).mean() > 0.5


def test_jbda_tr_points_stay_in_the_epsilon_ball_and_the_domain(target, pool):
    strategy = JBDATR(**SMALL, epsilon=0.05, step_size=0.02, n_iter=4)
    state, ends = simulate(strategy, target, pool, 100, batch=9)
    X = state.inputs()
    assert ((X >= 0) & (X <= 1)).all()
    for start, end in pairwise(ends[:3]):  # plain rounds: parent i → start + i
        gap = np.abs(X[start:end] - X[: end - start]).max()
        assert 0 < gap <= 0.05 + 1e-6
    for start, end in pairwise(ends[2:]):
        dist = np.abs(X[start:end, None, :] - X[None, :start, :]).max(axis=2)
        assert (dist.min(axis=1) <= 0.05 + 1e-6).all()


# --- recipes through extract -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["jbda", "jbda_tr"])
@pytest.mark.parametrize("budget", [1, 37, 100])
def test_recipe_never_exceeds_its_budget(name, budget, target, pool):
    counter = CountingTarget(target)
    result = extract(
        counter,
        build_recipe(name, **SMALL, **FAST),
        pool=pool,
        budget=budget,
        seed=0,
        schedule=sorted({max(1, budget // 3), budget}),
        domain=DOMAIN,
    )
    assert counter.rows == result.queries == len(result.queried_x) == budget
    assert ((result.queried_x >= 0) & (result.queried_x <= 1)).all()


@pytest.mark.parametrize("name", ["jbda_papernot_2017", "jbda_tr_juuti_2019"])
def test_recipe_is_deterministic_given_the_seed(name, target, pool, digits):
    def run(seed):
        return extract(
            target,
            build_recipe(name, **SMALL, **FAST),
            pool=pool,
            budget=60,
            seed=seed,
            domain=DOMAIN,
        )

    a, b, c = run(3), run(3), run(4)
    np.testing.assert_array_equal(a.queried_x, b.queried_x)
    probe = digits[0][1400:1500]
    np.testing.assert_array_equal(
        predict_proba(a.substitute, probe), predict_proba(b.substitute, probe)
    )
    assert not np.array_equal(a.queried_x, c.queried_x)


def test_recipe_hard_labels_default_follows_the_papers():
    y = np.array([[0.2, 0.7, 0.1]])
    assert build_recipe("jbda").recovery(y).tolist() == [[0.0, 1.0, 0.0]]
    assert build_recipe("jbda_tr").recovery(y).tolist() == y.tolist()
    assert build_recipe("jbda", hard_labels=False).recovery(y).tolist() == y.tolist()


# --- uniform noise ---------------------------------------------------------------------------


def test_uniform_noise_fills_the_domain(pool):
    state = AttackState(pool=pool[:0], n_classes=10, input_shape=(64,), domain=(-1.0, 2.0))
    x = UniformNoise().propose(state, 500, np.random.default_rng(0)).x
    assert x.shape == (500, 64) and x.dtype == np.float32
    assert x.min() >= -1 and x.max() <= 2 and x.min() < -0.9 and x.max() > 1.9


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda: JBDA(step_size=0),
            "'step_size' parameter of JBDA must be a float in \\(0, inf\\)",
        ),
        (lambda: JBDA(period=0), "'period' parameter of JBDA must be an int in \\[1, inf\\)"),
        (lambda: JBDA(seed_size=0), "'seed_size' parameter of JBDA must be an int"),
        (lambda: JBDA(reservoir_after=-1), "'reservoir_after' parameter of JBDA"),
        (lambda: JBDA(reservoir_size=0), "'reservoir_size' parameter of JBDA"),
        (lambda: JBDATR(epsilon=0.0), "'epsilon' parameter of JBDATR must be a float"),
        (lambda: JBDATR(step_size=-0.1), "'step_size' parameter of JBDATR"),
        (lambda: JBDATR(n_iter=0), "'n_iter' parameter of JBDATR must be an int"),
        (lambda: UniformNoise(domain=(1.0, 0.0)), "'domain' parameter of UniformNoise"),
        (lambda: jbda_rounds(0, 10), "'budget' parameter of jbda_rounds"),
        (lambda: build_recipe("jbda", seed_size=1.5), "'seed_size' parameter of JBDA"),
        (lambda: build_recipe("jbda_tr", n_iter="8"), "'n_iter' parameter of JBDATR"),
    ],
)
def test_parameter_errors_teach(make, match):
    with pytest.raises(InvalidParameterError, match=match):
        make()


def test_a_pool_smaller_than_the_seed_set_is_refused(target, pool):
    with pytest.raises(InvalidParameterError, match="seed set of 150 rows .* pool, which has 40"):
        extract(target, build_recipe("jbda", **FAST), pool=pool[:40], budget=10, seed=0)


def test_augmenting_without_a_substitute_is_refused(pool):
    state = AttackState(pool=pool[:5], n_classes=10, input_shape=(64,))
    state.queried_x.append(pool[:5])
    state.responses.append(np.eye(10)[:5])
    with pytest.raises(InvalidParameterError, match="no substitute has been trained yet"):
        JBDA().propose(state, 5, np.random.default_rng(0))
