"""Contract tests over every registered defense, and the defended-target wrapper.

Each defense is held to what it promises: shape kept, rows on the simplex, the argmax kept where
``preserves_argmax``, ℓ1 ≤ ``max_l1`` where it gives one, and the same answers from the same seed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from modelsteal.defenses import DEFENSES, build_defense, defended, evaluate_defense
from modelsteal.errors import InvalidParameterError, UnknownNameError
from modelsteal.targets import FunctionTarget, TorchTarget, budgeted, softmax

C, D = 10, 16


def _make(name: str, **params):
    """A fresh instance of each registered defense with test-sized parts."""
    if name == "am":
        torch.manual_seed(0)
        params.setdefault("misinformation_model", torch.nn.Sequential(torch.nn.Linear(D, C)))
    return build_defense(name, **params)


def _inputs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, D), dtype=np.float32)


def _rows(n: int, c: int):
    """Probability rows including hard cases: one-hot, uniform, ties, exact zeros."""
    weights = arrays(np.float64, (n, c), elements=st.sampled_from([0.0, 1e-9, 0.01, 0.3, 1.0, 5.0]))
    return weights.map(lambda w: np.where(w.sum(axis=1, keepdims=True) > 0, w, 1.0)).map(
        lambda w: w / w.sum(axis=1, keepdims=True)
    )


def _check(name: str, defense, y: np.ndarray, out: np.ndarray) -> None:
    assert out.shape == y.shape
    assert np.all(out >= 0), name
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-9, err_msg=name)
    if defense.preserves_argmax:
        top = y.argmax(axis=1)
        unique_top = (y == y.max(axis=1, keepdims=True)).sum(axis=1) == 1
        assert np.all(out.argmax(axis=1)[unique_top] == top[unique_top]), name
    if defense.max_l1 is not None:
        assert np.all(np.abs(out - y).sum(axis=1) <= defense.max_l1 + 1e-9), name


@pytest.mark.parametrize("name", DEFENSES.names())
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_every_defense_keeps_its_promises(name, data):
    n = data.draw(st.integers(1, 12))
    y = data.draw(_rows(n, C))
    defense = _make(name)
    out = defense.perturb(y, x=_inputs(n))
    _check(name, defense, y, out)


@pytest.mark.parametrize("name", DEFENSES.names())
def test_every_defense_on_a_stream_of_batches(name):
    rng = np.random.default_rng(1)
    defense = _make(name)
    for step in range(4):
        y = rng.dirichlet(np.full(C, 0.3), size=64)
        _check(name, defense, y, defense.perturb(y, x=_inputs(64, step)))


@pytest.mark.parametrize("name", DEFENSES.names())
def test_every_defense_is_seeded(name):
    rng = np.random.default_rng(2)
    ys = [rng.dirichlet(np.full(C, 0.5), size=20) for _ in range(3)]
    a, b = _make(name), _make(name)
    for i, y in enumerate(ys):
        np.testing.assert_array_equal(
            a.perturb(y, x=_inputs(20, i)), b.perturb(y, x=_inputs(20, i))
        )


@pytest.mark.parametrize("name", DEFENSES.names())
def test_every_defense_rejects_non_probabilities(name):
    with pytest.raises(Exception, match="probability vectors"):
        _make(name).perturb(np.full((2, C), 0.5), x=_inputs(2))


def test_hand_computed_cases():
    y = np.array([[0.12, 0.31, 0.26, 0.31]])
    np.testing.assert_allclose(_make("rounding", decimals=1).perturb(y), [[0.1, 0.3, 0.3, 0.3]])
    y = np.array([[0.1, 0.6, 0.3]])
    np.testing.assert_array_equal(_make("top1").perturb(y), [[0, 1, 0]])
    np.testing.assert_allclose(_make("topk", k=2).perturb(y), [[0, 2 / 3, 1 / 3]])
    np.testing.assert_allclose(
        _make("high_confidence", cutoff=0.25).perturb(y), [[0, 2 / 3, 1 / 3]]
    )
    np.testing.assert_array_equal(_make("none").perturb(y), y)
    # reverse sigmoid with beta = 0 is the identity
    np.testing.assert_allclose(_make("reverse_sigmoid", beta=0.0).perturb(y), y)


def test_rounding_keeps_multiples_of_the_unit():
    y = np.random.default_rng(3).dirichlet(np.ones(7), size=200)
    for decimals in (0, 1, 2, 3):
        out = _make("rounding", decimals=decimals).perturb(y)
        units = out * 10**decimals
        np.testing.assert_allclose(units, np.rint(units), atol=1e-9)


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        (
            "rounding",
            {"decimals": -1},
            r"'decimals' parameter of Rounding must be an int in \[0, 12\]. Got -1",
        ),
        (
            "reverse_sigmoid",
            {"beta": -0.1},
            r"'beta' parameter of ReverseSigmoid must be a float in \[0, inf\). Got -0.1",
        ),
        (
            "reverse_sigmoid",
            {"gamma": 0},
            r"'gamma' parameter of ReverseSigmoid must be a float in \(0, inf\). Got 0",
        ),
        ("topk", {"k": 0}, r"'k' parameter of TopK must be an int in \[1, inf\). Got 0"),
        (
            "random_noise",
            {"epsilon": 0},
            r"'epsilon' parameter of RandomNoise must be a float in \(0, inf\). Got 0",
        ),
        (
            "random_noise",
            {"dist": "l3"},
            r"'dist' parameter of RandomNoise must be one of 'l1', 'l2'. Got 'l3'",
        ),
        (
            "high_confidence",
            {"cutoff": 2},
            r"'cutoff' parameter of HighConfidence must be a float in \[0, 1\]. Got 2",
        ),
        (
            "gaussian_noise",
            {"scale": -1},
            r"'scale' parameter of GaussianNoise must be a float in \[0, inf\)",
        ),
        (
            "none",
            {"epsilon": 1},
            r"Defense 'none' has no parameter 'epsilon'. Its parameters are: \(none\)",
        ),
        ("topk", {"kk": 1}, "Defense 'topk' has no parameter 'kk'. Its parameters are: k"),
    ],
)
def test_bad_parameters_name_parameter_range_and_value(name, params, match):
    with pytest.raises(InvalidParameterError, match=match):
        _make(name, **params)


def test_unknown_defense_lists_known_ones():
    with pytest.raises(UnknownNameError, match="Unknown defense 'mad2'.*Known defenses:.*top1"):
        build_defense("mad2")


def test_defended_target_is_a_target_and_composes(digits_mlp, digits):
    X, _ = digits
    target = TorchTarget(digits_mlp, input_shape=(64,))
    shielded = budgeted(defended(target, "top1"), 50)
    out = shielded.query(X[:30])
    np.testing.assert_array_equal(out.argmax(axis=1), target.query(X[:30]).argmax(axis=1))
    assert set(np.unique(out)) == {0.0, 1.0} and shielded.spent == 30
    with pytest.raises(InvalidParameterError, match="only with a defense name"):
        defended(target, _make("top1"), k=3)


def test_evaluate_defense_reports_utility(digits_mlp, digits):
    X, y = digits
    target = TorchTarget(digits_mlp, input_shape=(64,))
    noise = np.random.default_rng(0).random((200, 64), dtype=np.float32)
    clean = evaluate_defense(target, _make("none"), test_x=X[1400:], test_y=y[1400:], ood_x=noise)
    top1 = evaluate_defense(target, _make("top1"), test_x=X[1400:], test_y=y[1400:], ood_x=noise)
    assert clean["max_l1"] == 0 and clean["protected_accuracy"] == clean["clean_accuracy"]
    assert top1["protected_accuracy"] == clean["clean_accuracy"] and top1["argmax_kept"] == 1.0
    assert 0 < top1["max_l1"] <= 2 and top1["ood_auroc"] == 0.5  # one-hot rows: MSP always 1
    assert clean["ood_auroc"] == clean["clean_ood_auroc"]


def test_function_target_through_defense_keeps_contract():
    w = np.random.default_rng(0).normal(size=(D, C))
    target = FunctionTarget(lambda x: softmax(x @ w), n_classes=C, input_shape=(D,))
    out = defended(target, "reverse_sigmoid").query(_inputs(40))
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-12)
