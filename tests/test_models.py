import numpy as np
import pytest
import torch

from modelsteal.errors import InvalidParameterError, UnknownNameError
from modelsteal.models import (
    DEVICE_VARIABLE,
    MODELS,
    ModelInfo,
    TrainConfig,
    build_model,
    compute_device,
    load_model,
    predict_proba,
    save_model,
    soft_cross_entropy,
    train_model,
)

SHAPES = {"logreg": (64,), "mlp": (64,), "cnn": (1, 8, 8)}


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_builds_and_predicts(name):
    shape = SHAPES[name]
    model = build_model(name, shape, 10, seed=0)
    probs = predict_proba(model, np.random.default_rng(0).random((5, *shape), dtype=np.float32))
    assert probs.shape == (5, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("name", MODELS.names())
def test_build_is_seeded_and_leaves_global_rng_alone(name):
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = build_model(name, SHAPES[name], 10, seed=7)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = build_model(name, SHAPES[name], 10, seed=7)
    c = build_model(name, SHAPES[name], 10, seed=8)
    pa, pb, pc = (list(m.parameters()) for m in (a, b, c))
    assert all(torch.equal(x, y) for x, y in zip(pa, pb, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(pa, pc, strict=True))


def test_training_is_deterministic_and_learns(digits):
    X, y = digits
    config = TrainConfig(epochs=20, batch_size=32)

    def run(seed):
        model = build_model("mlp", (64,), 10, seed=seed, hidden=(32,), dropout=0.2)
        return predict_proba(
            train_model(model, X[:600], y[:600], config=config, seed=seed), X[600:900]
        )

    a, b, c = run(0), run(0), run(1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.mean(a.argmax(axis=1) == y[600:900]) > 0.8  # chance is 0.1


def test_soft_labels_equal_hard_labels_when_one_hot(digits):
    X, y = digits
    one_hot = np.eye(10, dtype=np.float32)[y[:300]]
    config = TrainConfig(epochs=2)
    m1 = train_model(build_model("mlp", (64,), 10, seed=0), X[:300], y[:300], config=config, seed=0)
    m2 = train_model(build_model("mlp", (64,), 10, seed=0), X[:300], one_hot, config=config, seed=0)
    np.testing.assert_allclose(predict_proba(m1, X[:50]), predict_proba(m2, X[:50]), atol=1e-6)
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    target = torch.tensor([[0.0, 1.0, 0.0]])
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor([1]))
    assert torch.isclose(soft_cross_entropy(logits, target), expected)


def test_save_load_roundtrip(tmp_path, digits_mlp, digits):
    X, _ = digits
    info = ModelInfo(
        arch="mlp", input_shape=(64,), n_classes=10, params={"hidden": [64]}, metadata={"a": 1}
    )
    path = save_model(tmp_path / "sub" / "m.pt", digits_mlp, info)
    model, loaded = load_model(path)
    assert loaded == info
    np.testing.assert_array_equal(predict_proba(model, X[:20]), predict_proba(digits_mlp, X[:20]))
    assert not list(tmp_path.glob("**/*.tmp"))


def test_model_errors(tmp_path):
    with pytest.raises(UnknownNameError, match="Unknown model 'resnet'.*cnn, logreg, mlp"):
        build_model("resnet", (64,), 10, seed=0)
    with pytest.raises(
        InvalidParameterError, match=r"'input_shape' parameter of cnn must be \(channels"
    ):
        build_model("cnn", (64,), 10, seed=0)
    with pytest.raises(
        InvalidParameterError, match=r"'dropout' parameter of mlp must be a float in \[0, 1\)"
    ):
        build_model("mlp", (64,), 10, seed=0, dropout=1.5)
    with pytest.raises(InvalidParameterError, match="Model 'mlp'.*unexpected keyword"):
        build_model("mlp", (64,), 10, seed=0, width=3)
    with pytest.raises(
        InvalidParameterError,
        match=r"'epochs' parameter of TrainConfig must be an int in \[1, inf\). Got 0",
    ):
        TrainConfig(epochs=0)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(InvalidParameterError, match="not a modelsteal model bundle"):
        load_model(tmp_path / "other.pt")


@pytest.mark.parametrize(
    ("value", "says"),
    [("tpu:0", "not a device torch knows"), ("meta", "only 'cpu' and 'cuda'")],
)
def test_compute_device_errors_name_the_variable(monkeypatch, value, says):
    monkeypatch.setenv(DEVICE_VARIABLE, value)
    with pytest.raises(InvalidParameterError, match=says) as err:
        compute_device()
    assert DEVICE_VARIABLE in str(err.value) and value in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_a_missing_gpu_fails_before_training(monkeypatch, digits):
    X, y = digits
    monkeypatch.setenv(DEVICE_VARIABLE, "cuda")
    model = build_model("mlp", (64,), 10, seed=0)
    with pytest.raises(InvalidParameterError, match="sees none"):
        train_model(model, X[:32], y[:32], config=TrainConfig(epochs=1), seed=0)


def test_the_model_comes_back_to_the_cpu_after_training_and_prediction(monkeypatch, digits):
    X, y = digits
    monkeypatch.setenv(DEVICE_VARIABLE, "cuda" if torch.cuda.is_available() else "cpu")
    model = build_model("mlp", (64,), 10, seed=0)
    train_model(model, X[:64], y[:64], config=TrainConfig(epochs=1), seed=0)
    probs = predict_proba(model, X[:8])
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert probs.shape == (8, 10) and np.allclose(probs.sum(1), 1.0)
