import numpy as np
import pytest

from modelsteal.errors import InputValidationError, InvalidParameterError
from modelsteal.metrics import fidelity
from modelsteal.privacy import (
    imitation_loss,
    imitation_privacy,
    is_private,
    multi_task_privacy,
    privacy_probability,
)


@pytest.fixture
def regression_pair():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 3))
    f_m = x @ np.array([1.0, -2.0, 0.5])
    f_i = f_m + rng.normal(scale=0.5, size=f_m.shape)
    return f_i, f_m


def test_exact_copy_has_zero_rho(regression_pair):
    _, f_m = regression_pair
    out = imitation_privacy(f_m.copy(), f_m, task="regression", n_boot=200)
    assert out == {"rho": 0.0, "low": 0.0, "high": 0.0}
    probs = np.random.default_rng(0).dirichlet(np.ones(4), size=50)
    assert imitation_privacy(probs, probs.argmax(1), n_boot=50)["rho"] == 0.0


@pytest.mark.parametrize("scale", ["dataset", "sample"])
def test_trivial_zero_imitation_has_rho_one(regression_pair, scale):
    _, f_m = regression_pair
    out = imitation_privacy(np.zeros_like(f_m), f_m, task="regression", scale=scale, n_boot=200)
    assert out["rho"] == pytest.approx(1.0)
    assert out["low"] == pytest.approx(1.0) and out["high"] == pytest.approx(1.0)
    multi = np.column_stack([f_m, 2 * f_m])  # (n, d) outputs use the Euclidean norm
    assert imitation_privacy(np.zeros_like(multi), multi, task="regression")["rho"] == 1.0


def test_regression_dataset_scale_hand_computed():
    f_m = np.array([1.0, 2.0, 0.0])
    f_i = np.array([2.0, 2.0, 1.0])
    # Σ err = 1 + 0 + 1 = 2; Σ |f_M|² = 5
    assert imitation_privacy(f_i, f_m, task="regression")["rho"] == pytest.approx(0.4)
    losses = imitation_loss(f_i, f_m, task="regression")
    np.testing.assert_allclose(losses, [0.6, 0.0, 0.6])
    np.testing.assert_allclose(
        imitation_loss(f_i[:2], f_m[:2], task="regression", scale="sample"), [1.0, 0.0]
    )


def test_classification_rho_is_one_minus_fidelity():
    rng = np.random.default_rng(2)
    module = rng.dirichlet(np.ones(5), size=300)
    imitation = module.argmax(1).copy()
    flip = rng.random(300) < 0.3
    imitation[flip] = rng.integers(0, 5, size=int(flip.sum()))
    rho = imitation_privacy(imitation, module, n_boot=100)["rho"]
    assert rho == pytest.approx(1.0 - fidelity(imitation, module))
    assert imitation_loss(imitation, module).mean() == pytest.approx(rho)


def test_bootstrap_ci_contains_rho_and_narrows_with_n():
    rng = np.random.default_rng(3)
    widths = []
    for n in (100, 2500):
        module = rng.integers(0, 3, size=n)
        imitation = np.where(rng.random(n) < 0.2, (module + 1) % 3, module)
        out = imitation_privacy(imitation, module, n_boot=500, seed=0)
        assert out["low"] <= out["rho"] <= out["high"]
        assert out["low"] < out["high"]
        widths.append(out["high"] - out["low"])
    assert widths[1] < widths[0] / 3  # about 1/sqrt(25)


def test_seeded_determinism(regression_pair):
    f_i, f_m = regression_pair
    a = imitation_privacy(f_i, f_m, task="regression", n_boot=300, seed=7)
    b = imitation_privacy(f_i, f_m, task="regression", n_boot=300, seed=7)
    c = imitation_privacy(f_i, f_m, task="regression", n_boot=300, seed=8)
    assert a == b
    assert a != c and a["rho"] == c["rho"]


def test_multi_task_averages_single_task_rhos(regression_pair):
    f_i, f_m = regression_pair
    tasks_i = [f_i, np.zeros_like(f_m), f_m]
    tasks_m = [f_m, f_m, f_m]
    singles = [
        imitation_privacy(a, b, task="regression")["rho"]
        for a, b in zip(tasks_i, tasks_m, strict=True)
    ]
    out = multi_task_privacy(tasks_i, tasks_m, task="regression", n_boot=300, seed=0)
    assert out["rho"] == pytest.approx(np.mean(singles))
    assert out["low"] <= out["rho"] <= out["high"]
    fixed = multi_task_privacy(tasks_i, tasks_m, task="regression", resample_tasks=False)
    assert fixed["high"] - fixed["low"] < out["high"] - out["low"]
    one = multi_task_privacy([f_i], [f_m], task="regression", n_boot=300, seed=0)
    assert one == imitation_privacy(f_i, f_m, task="regression", n_boot=300, seed=0)


def test_privacy_probability_hand_cases():
    rhos = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    out = privacy_probability(rhos, 0.4)  # 5 of 10
    assert out["p"] == 0.5
    assert out["low"] == pytest.approx(0.2366, abs=1e-4)
    assert out["high"] == pytest.approx(0.7634, abs=1e-4)
    assert privacy_probability(rhos, 0.0)["k"] == 1.0  # ρ ≤ ε is inclusive
    zero = privacy_probability(rhos + 1.0, 0.5)
    z2 = 1.959963984540054**2
    assert zero["p"] == 0.0 and zero["low"] == 0.0
    assert zero["high"] == pytest.approx((z2 / 10) / (1 + z2 / 10))
    full = privacy_probability(rhos, 1.0)
    assert full["p"] == 1.0 and full["high"] == 1.0
    assert full["low"] == pytest.approx(1 - zero["high"])


def test_is_private_point_and_conservative():
    rhos = np.array([0.05, 0.5, 0.6, 0.7, 0.8, 0.9, 0.9, 0.9, 0.9, 0.9])  # P(ρ ≤ 0.1) = 0.1
    assert is_private(rhos, 0.1, 0.1)
    assert not is_private(rhos, 0.1, 0.05)
    assert not is_private(rhos, 0.1, 0.1, confidence=0.95)  # upper bound ≈ 0.40
    assert is_private(rhos, 0.1, 0.5, confidence=0.95)


def test_errors():
    with pytest.raises(InputValidationError, match="same shape"):
        imitation_privacy(np.zeros(3), np.ones(4), task="regression")
    with pytest.raises(InputValidationError, match="same samples"):
        imitation_privacy(np.zeros(3, dtype=int), np.ones(4, dtype=int))
    with pytest.raises(InputValidationError, match="0 on every row"):
        imitation_privacy(np.ones(3), np.zeros(3), task="regression")
    with pytest.raises(InputValidationError, match="scale='dataset'"):
        imitation_loss(np.ones(2), np.array([1.0, 0.0]), task="regression", scale="sample")
    with pytest.raises(InputValidationError, match="finite"):
        imitation_privacy(np.array([np.nan]), np.ones(1), task="regression")
    with pytest.raises(InvalidParameterError, match="'task' parameter"):
        imitation_privacy(np.ones(2), np.ones(2), task="ranking")
    with pytest.raises(InvalidParameterError, match="'n_boot' parameter"):
        imitation_privacy(np.ones(2), np.ones(2), n_boot=0)
    with pytest.raises(InvalidParameterError, match="'confidence' parameter"):
        imitation_privacy(np.ones(2), np.ones(2), confidence=1.0)
    with pytest.raises(InputValidationError, match="one entry per task"):
        multi_task_privacy([np.ones(2)], [np.ones(2), np.ones(2)])
    with pytest.raises(InputValidationError, match="same rows"):
        multi_task_privacy([np.ones(2), np.ones(3)], [np.ones(2), np.ones(3)], task="regression")
    with pytest.raises(InputValidationError, match="non-empty"):
        privacy_probability(np.array([]), 0.1)
    with pytest.raises(InvalidParameterError, match="'epsilon' parameter"):
        privacy_probability(np.ones(3), -0.1)
    with pytest.raises(InvalidParameterError, match="'delta' parameter"):
        is_private(np.ones(3), 0.1, 1.5)
