"""Rashomon-set sampling: re-training, fixed-mask dropout exploration, the ε filter (issue 9)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from modelsteal.errors import InputValidationError, InvalidParameterError
from modelsteal.models import TrainConfig, predict_proba
from modelsteal.multiplicity import (
    DropoutSample,
    rashomon_set,
    sample_awp,
    sample_dropout,
    sample_retrained,
    stack_scores,
)

_CFG = TrainConfig(epochs=3, batch_size=64)


@pytest.fixture(scope="module")
def split(digits):
    X, y = digits
    return X[:400], y[:400], X[1000:1300], y[1000:1300]


@pytest.mark.parametrize("kind", ["bernoulli", "gaussian"])
def test_dropout_models_are_deterministic_and_differ(digits, digits_mlp, kind):
    X = digits[0][1000:1200]
    models = sample_dropout(digits_mlp, p_values=[0.2], n_per_p=3, kind=kind, seed=0)
    assert len(models) == 3
    first = [predict_proba(m, X) for m in models]
    second = [predict_proba(m, X) for m in models]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(first[0], first[1])
    # the same seed draws the same masks; a single row gives the same answer as in a batch
    again = sample_dropout(digits_mlp, p_values=[0.2], n_per_p=3, kind=kind, seed=0)
    np.testing.assert_array_equal(predict_proba(again[2], X), first[2])
    np.testing.assert_allclose(predict_proba(models[0], X[:1]), first[0][:1], atol=1e-6)


def test_dropout_p0_reproduces_base_and_leaves_base_unchanged(digits, digits_mlp):
    X = digits[0][1000:1200]
    base = predict_proba(digits_mlp, X)
    models = sample_dropout(digits_mlp, p_values=[0.0, 0.3], n_per_p=2, seed=1)
    assert [m.p for m in models] == [0.0, 0.0, 0.3, 0.3]
    for m in models[:2]:
        np.testing.assert_array_equal(predict_proba(m, X), base)
    predict_proba(models[3], X)
    np.testing.assert_array_equal(predict_proba(digits_mlp, X), base)  # hooks removed


def test_dropout_masks_conv_channels():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    X = np.random.default_rng(0).random((5, 1, 8, 8)).astype(np.float32)
    zero = DropoutSample(base, p=0.0, kind="gaussian", seed=0)
    np.testing.assert_allclose(predict_proba(zero, X), predict_proba(base, X), atol=1e-12)
    noisy = DropoutSample(base, p=0.5, kind="gaussian", seed=0)
    out = predict_proba(noisy, X)
    np.testing.assert_array_equal(out, predict_proba(noisy, X))
    assert not np.allclose(out, predict_proba(base, X))


def test_retrained_reproducible_and_seed_dependent(split):
    X, y, Xv, _ = split
    a = sample_retrained(
        X, y, arch="mlp", params={"hidden": (32,)}, config=_CFG, n_models=2, seed=3
    )
    b = sample_retrained(
        X, y, arch="mlp", params={"hidden": (32,)}, config=_CFG, n_models=2, seed=3
    )
    c = sample_retrained(
        X, y, arch="mlp", params={"hidden": (32,)}, config=_CFG, n_models=1, seed=4
    )
    sa, sb, sc = stack_scores(a, Xv), stack_scores(b, Xv), stack_scores(c, Xv)
    np.testing.assert_array_equal(sa, sb)
    assert not np.allclose(sa[0], sa[1])
    assert not np.allclose(sa[0], sc[0])


def test_retrained_on_soft_labels(split, digits_mlp):
    X, _, Xv, _ = split
    soft = predict_proba(digits_mlp, X)
    models = sample_retrained(X, soft, arch="logreg", config=_CFG, n_models=1, seed=0)
    assert stack_scores(models, Xv).shape == (1, len(Xv), 10)


def test_stack_scores_shape_and_simplex(digits, digits_mlp):
    X = digits[0][1000:1100]
    models = [digits_mlp, *sample_dropout(digits_mlp, p_values=[0.1], n_per_p=2, seed=0)]
    scores = stack_scores(models, X, batch_size=32)
    assert scores.shape == (3, 100, 10)
    assert scores.dtype == np.float64
    assert np.all(scores >= 0)
    np.testing.assert_allclose(scores.sum(axis=2), 1.0, atol=1e-9)


@pytest.mark.parametrize("criterion", ["loss", "fidelity"])
def test_rashomon_set_keeps_best_and_only_models_within_eps(split, digits_mlp, criterion):
    _, _, Xv, _ = split
    answers = predict_proba(digits_mlp, Xv)  # the "target" answers on the held-out split
    models = sample_dropout(digits_mlp, p_values=[0.0, 0.1, 0.3, 0.6], n_per_p=3, seed=0)
    eps = 0.05
    kept, values = rashomon_set(models, Xv, answers, epsilon=eps, criterion=criterion)
    assert values.shape == (len(models),)
    best = int(values.argmin() if criterion == "loss" else values.argmax())
    assert best in kept
    if criterion == "loss":
        expected = np.flatnonzero(values <= values.min() + eps + 1e-12)
    else:
        expected = np.flatnonzero(values >= values.max() - eps - 1e-12)
    np.testing.assert_array_equal(kept, expected)
    assert 0 < len(kept) < len(models)
    # ε = 0 keeps only the ties with the best; a huge ε keeps everything
    kept0, _ = rashomon_set(models, Xv, answers, epsilon=0.0, criterion=criterion)
    assert set(kept0) <= set(kept) and best in kept0
    kept_all, _ = rashomon_set(models, Xv, answers, epsilon=1e9, criterion=criterion)
    np.testing.assert_array_equal(kept_all, np.arange(len(models)))


def test_rashomon_set_baseline_and_hard_labels(split, digits_mlp):
    _, _, Xv, yv = split
    models = sample_dropout(digits_mlp, p_values=[0.0, 0.5], n_per_p=2, seed=0)
    kept, values = rashomon_set(models, Xv, yv, epsilon=0.0, baseline=3)
    np.testing.assert_array_equal(kept, np.flatnonzero(values <= values[3] + 1e-12))
    assert 3 in kept


def test_errors(split, digits_mlp):
    X, y, Xv, yv = split
    with pytest.raises(InvalidParameterError, match="'kind' parameter of DropoutSample"):
        sample_dropout(digits_mlp, p_values=[0.1], n_per_p=1, kind="uniform", seed=0)
    with pytest.raises(InvalidParameterError, match=r"'p' parameter of DropoutSample .*\[0, 1\)"):
        sample_dropout(digits_mlp, p_values=[1.0], n_per_p=1, seed=0)
    with pytest.raises(InvalidParameterError, match="'p_values' parameter of sample_dropout"):
        sample_dropout(digits_mlp, p_values=[], n_per_p=1, seed=0)
    with pytest.raises(InvalidParameterError, match="'n_per_p' parameter of sample_dropout"):
        sample_dropout(digits_mlp, p_values=[0.1], n_per_p=0, seed=0)
    with pytest.raises(InputValidationError, match="no nn.Linear or nn.Conv2d"):
        DropoutSample(nn.Sequential(nn.ReLU()), p=0.1, kind="bernoulli", seed=0)
    with pytest.raises(InvalidParameterError, match="'n_models' parameter of sample_retrained"):
        sample_retrained(X, y, arch="logreg", n_models=0, seed=0)
    with pytest.raises(InputValidationError, match="same, non-zero number of rows"):
        sample_retrained(X, y[:10], arch="logreg", n_models=1, seed=0)
    with pytest.raises(InvalidParameterError, match="'epsilon' parameter of rashomon_set"):
        rashomon_set([digits_mlp], Xv, yv, epsilon=-0.1)
    with pytest.raises(InvalidParameterError, match="'criterion' parameter of rashomon_set"):
        rashomon_set([digits_mlp], Xv, yv, epsilon=0.1, criterion="accuracy")
    with pytest.raises(InvalidParameterError, match="'baseline' parameter of rashomon_set"):
        rashomon_set([digits_mlp], Xv, yv, epsilon=0.1, baseline=1)
    with pytest.raises(InputValidationError, match="Y_val must be"):
        rashomon_set([digits_mlp], Xv, yv[:5], epsilon=0.1)
    with pytest.raises(InputValidationError, match="at least one model"):
        stack_scores([], Xv)


# --- adversarial weight perturbation --------------------------------------------------------


def _flat(model) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _held_out(split, digits_mlp):
    _, _, Xv, _ = split
    return Xv, predict_proba(digits_mlp, Xv)


@pytest.mark.parametrize("direction", ["ascent", "random"])
def test_awp_models_stay_inside_the_set_and_reach_its_edge(split, digits_mlp, direction):
    Xv, answers = _held_out(split, digits_mlp)
    before = _flat(digits_mlp).clone()
    eps = 0.02
    samples = sample_awp(
        digits_mlp, Xv, answers, epsilon=eps, n_models=4, seed=0, direction=direction
    )
    np.testing.assert_array_equal(_flat(digits_mlp).numpy(), before.numpy())  # base untouched
    models = [digits_mlp, *(s.model for s in samples)]
    kept, values = rashomon_set(models, Xv, answers, epsilon=eps, baseline=0)
    np.testing.assert_array_equal(kept, np.arange(len(models)))  # every sample is in the set
    for s, v in zip(samples, values[1:], strict=True):
        assert s.left and s.loss == pytest.approx(v, abs=1e-12) and v <= s.tol + 1e-12
        assert s.tol == pytest.approx(values[0] + eps)
        assert s.tol - v < 0.01 * eps + 1e-4  # bisected to near the boundary
    # the walks differ, and the same seed reproduces them
    assert not torch.allclose(_flat(samples[0].model), _flat(samples[1].model))
    again = sample_awp(
        digits_mlp, Xv, answers, epsilon=eps, n_models=1, seed=0, direction=direction
    )
    np.testing.assert_array_equal(_flat(again[0].model).numpy(), _flat(samples[0].model).numpy())


def test_awp_one_more_step_leaves_the_set(split, digits_mlp):
    """With refine=0 the model is the last whole step inside: the next step is outside."""
    Xv, answers = _held_out(split, digits_mlp)
    eps = 0.02
    (s,) = sample_awp(
        digits_mlp, Xv, answers, epsilon=eps, n_models=1, seed=3, direction="random", refine=0
    )
    assert s.left and s.steps >= 1
    theta0, theta = _flat(digits_mlp), _flat(s.model)
    step = (theta - theta0) / s.steps
    outside = copy.deepcopy(digits_mlp)
    torch.nn.utils.vector_to_parameters(theta0 + (s.steps + 1) * step, outside.parameters())
    _, values = rashomon_set([digits_mlp, s.model, outside], Xv, answers, epsilon=eps, baseline=0)
    assert values[1] <= s.tol + 1e-9 < values[2]


def test_awp_stops_at_max_steps_inside(split, digits_mlp):
    Xv, answers = _held_out(split, digits_mlp)
    (s,) = sample_awp(
        digits_mlp, Xv, answers, epsilon=1.0, n_models=1, seed=0, step_size=1e-4, max_steps=3
    )
    assert not s.left and s.steps == 3 and s.loss <= s.tol
    (zero,) = sample_awp(digits_mlp, Xv, answers, epsilon=0.0, n_models=1, seed=0)
    assert zero.steps == 0 and zero.loss <= zero.tol  # ε = 0: the first step already leaves


def test_awp_errors(split, digits_mlp):
    Xv, answers = _held_out(split, digits_mlp)
    with pytest.raises(InvalidParameterError, match="'direction' parameter of sample_awp"):
        sample_awp(digits_mlp, Xv, answers, epsilon=0.1, n_models=1, seed=0, direction="up")
    with pytest.raises(InvalidParameterError, match="'epsilon' parameter of sample_awp"):
        sample_awp(digits_mlp, Xv, answers, epsilon=-1.0, n_models=1, seed=0)
    with pytest.raises(InvalidParameterError, match="'step_size' parameter of sample_awp"):
        sample_awp(digits_mlp, Xv, answers, epsilon=0.1, n_models=1, seed=0, step_size=0)
    with pytest.raises(InputValidationError, match="same, non-zero number of rows"):
        sample_awp(digits_mlp, Xv, answers[:3], epsilon=0.1, n_models=1, seed=0)
    with pytest.raises(InputValidationError, match="already above the tolerance"):
        sample_awp(digits_mlp, Xv, answers, epsilon=0.0, n_models=1, seed=0, reference_loss=-1.0)
