"""Exact extraction: equation solving, tree path finding, Lowd–Meek, ReLU from gradients and
logits, gradient-matching substitutes."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from modelsteal.attacks.exact import (
    EXACT_ATTACKS,
    LeafTarget,
    ReluNetTarget,
    equation_solving_lr,
    equation_solving_softmax,
    load_adult,
    lowd_meek,
    relu_from_gradients,
    relu_from_logits,
    train_gradient_matching,
    tree_path_finding,
)
from modelsteal.errors import InvalidParameterError, QueryBudgetExceeded, UnknownNameError
from modelsteal.models import TrainConfig
from modelsteal.targets import SklearnTarget, TorchTarget, label_only


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    X = X.astype(np.float32)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(X[:400], y[:400])
    scaler, lr = model[0], model[-1]
    w = lr.coef_[0] / scaler.scale_
    b = lr.intercept_[0] - (scaler.mean_ / scaler.scale_) @ lr.coef_[0]
    box = (X.mean(0) - X.std(0), X.mean(0) + X.std(0))
    return X, model, w, b, box


@pytest.fixture(scope="module")
def digits_softmax():
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    return X, LogisticRegression(max_iter=3000).fit(X[:1200], y[:1200])


def _uniform(lo, hi, n, seed=0):
    return np.random.default_rng(seed).uniform(lo, hi, (n, np.size(lo))).astype(np.float32)


def test_binary_lr_from_d_plus_1_queries(cancer):
    X, model, w, b, box = cancer
    result = equation_solving_lr(SklearnTarget(model), seed=0, domain=box)
    assert result.queries == X.shape[1] + 1 == result.budget
    assert np.abs(result.params["w"] - w).max() <= 1e-6 * np.abs(w).max()
    assert abs(result.params["b"] - b) <= 1e-6 * abs(b)
    assert (result.predict(X[400:]) == model.predict(X[400:])).all()
    U = _uniform(X.min(0), X.max(0), 5000)
    assert (result.predict(U) == model.predict(U)).all()


def test_softmax_on_digits_from_c_d_plus_1_queries(digits_softmax):
    X, model = digits_softmax
    result = equation_solving_softmax(SklearnTarget(model), seed=0, domain=(0.0, 1.0))
    assert result.queries == 10 * 65
    assert (result.predict(X[1200:]) == model.predict(X[1200:])).all()
    U = _uniform(np.zeros(64), np.ones(64), 5000)
    assert (result.predict(U) == model.predict(U)).all()
    linear = equation_solving_softmax(SklearnTarget(model), seed=1, solver="linear", domain=(0, 1))
    assert linear.queries == 65
    assert (linear.predict(U) == model.predict(U)).all()


def test_tree_path_finding_finds_every_leaf():
    X, y = load_breast_cancer(return_X_y=True)
    X = X.astype(np.float32)
    tree = DecisionTreeClassifier(max_leaf_nodes=20, random_state=0).fit(X, y)
    target = LeafTarget(tree)
    result = tree_path_finding(target, seed=0, domain=(X.min(0), X.max(0)))
    assert result.info["leaves_found"] == result.info["leaves_total"] == 20
    assert result.queries <= result.budget
    assert (result.predict(X) == tree.predict(X)).all()
    U = _uniform(X.min(0), X.max(0), 5000)
    assert (result.predict(U) == tree.predict(U)).all()


def test_tree_with_categorical_and_integer_features():
    rng = np.random.default_rng(0)
    X = np.column_stack(
        [rng.integers(0, 5, 600), rng.integers(18, 90, 600), rng.normal(size=600)]
    ).astype(np.float32)
    y = ((X[:, 0] % 2 == 0) & (X[:, 1] > 40)) | (X[:, 2] > 1)
    tree = DecisionTreeClassifier(max_depth=5, random_state=0).fit(X, y)
    target = LeafTarget(tree)
    result = tree_path_finding(
        target,
        seed=1,
        domain=(X.min(0), X.max(0)),
        kinds=("categorical", "integer", "continuous"),
    )
    assert result.info["leaves_found"] == target.n_leaves
    grid = np.column_stack(
        [rng.integers(0, 5, 3000), rng.integers(18, 90, 3000), rng.normal(size=3000)]
    ).astype(np.float32)
    grid[:, 2] = np.clip(grid[:, 2], X[:, 2].min(), X[:, 2].max())
    assert (result.predict(grid) == tree.predict(grid)).all()


def test_adult_loader_reads_categories(shared_data_dir):
    if shared_data_dir is None or not (shared_data_dir / "adult" / "adult.data").is_file():
        pytest.skip("the shared Adult data set is not here")
    data = load_adult(data_dir=shared_data_dir)
    assert data.X.shape == (32561, 14)
    assert "?" in data.categories[1]  # missing workclass is a category of its own
    test = load_adult(data_dir=shared_data_dir, split="test")
    assert test.X.shape == (16281, 14) and set(np.unique(test.y)) == {0, 1}


def test_lowd_meek_recovers_weight_ratios(cancer):
    _X, model, w, _, box = cancer
    result = lowd_meek(label_only(SklearnTarget(model)), seed=0, domain=box)
    ratios = result.params["w"] / result.params["w"][0]
    assert np.abs(ratios - w / w[0]).max() <= 1e-4 * np.abs(w / w[0]).max()
    assert result.queries <= result.budget


@pytest.mark.parametrize(("d", "h"), [(5, 3), (20, 8), (200, 8)])
def test_relu_from_gradients_is_exact(d, h):
    target = ReluNetTarget.random(d, h, seed=d + h)
    result = relu_from_gradients(target, seed=0)
    X = np.random.default_rng(1).normal(size=(2000, d)) * 3
    f, g = target.score(X), result.model.score(X)
    assert np.abs(f - g).max() <= 1e-6 * np.abs(f).max()
    assert result.info["units_found"] == h


def test_relu_queries_grow_with_h_not_d():
    counts = {
        (d, h): relu_from_gradients(ReluNetTarget.random(d, h, seed=3), seed=0).queries
        for d in (10, 400)
        for h in (4, 16)
    }
    assert counts[(10, 16)] > 2 * counts[(10, 4)]
    assert counts[(400, 16)] > 2 * counts[(400, 4)]
    assert abs(counts[(400, 16)] - counts[(10, 16)]) < 0.3 * counts[(10, 16)]


@pytest.mark.parametrize(("d", "h", "seed"), [(5, 3, 0), (12, 6, 1), (20, 8, 0)])
def test_relu_from_logits_is_functionally_equivalent(d, h, seed):
    target = ReluNetTarget.random(d, h, seed=d + h)
    result = relu_from_logits(target, seed=seed, n_check=20)
    X = np.random.default_rng(1).normal(size=(2000, d)) * 3
    f, g = target.score(X), result.model.score(X)
    assert np.abs(f - g).max() <= 1e-6 * np.abs(f).max()
    assert result.info["units_found"] == h
    assert result.info["check_rel_err"] <= 1e-6
    # value queries only: the search, then (h + 1) region gradients of d + 1 values each
    assert result.info["gradient_queries"] == (h + 1) * (d + 1)
    assert result.queries == result.info["search_queries"] + (h + 1) * (d + 1) + 20
    assert result.queries <= result.budget
    assert (result.predict(X) == (f > 0)).all()


def test_relu_from_logits_never_asks_for_explanations():
    target = ReluNetTarget.random(6, 4, seed=2)

    def refuse(x):
        raise AssertionError("explain was called")

    target.explain = refuse
    assert relu_from_logits(target, seed=0).info["units_found"] == 4


def test_relu_from_logits_errors():
    net = ReluNetTarget.random(4, 3, seed=0)
    with pytest.raises(InvalidParameterError, match="answers labels only"):
        relu_from_logits(label_only(net), seed=0)
    with pytest.raises(QueryBudgetExceeded):
        relu_from_logits(net, seed=0, budget=20)
    with pytest.raises(InvalidParameterError, match="'step' parameter of relu_from_logits"):
        relu_from_logits(net, seed=0, step=0.9)


def test_from_bundle_model_reads_a_two_class_mlp():
    from modelsteal.models import build_model

    module = build_model("mlp", (7,), 2, seed=0, hidden=(5,))
    net = ReluNetTarget.from_bundle_model(module)
    x = np.random.default_rng(0).normal(size=(50, 7)).astype(np.float32)
    torch_probs = TorchTarget(module, input_shape=(7,)).query(x)
    assert np.abs(net.query(x.astype(np.float64)) - torch_probs).max() < 1e-6
    with pytest.raises(InvalidParameterError, match="one hidden layer and 2 classes"):
        ReluNetTarget.from_bundle_model(build_model("mlp", (7,), 2, seed=0))


def test_gradient_matching_pays_two_rows_per_input_and_matches_gradients(digits, digits_mlp):
    import torch

    X, _ = digits
    target = TorchTarget(digits_mlp, input_shape=(64,))
    x = X[900:960]
    config = TrainConfig(batch_size=30, lr=3e-3)
    kw = {"arch": "mlp", "arch_params": {"hidden": (32,)}, "config": config, "steps": 60}
    matched, queries = train_gradient_matching(target, x, lam=10.0, seed=0, **kw)
    plain, _ = train_gradient_matching(target, x, lam=0.0, seed=0, **kw)
    assert queries == 2 * len(x)

    def grad_error(model):
        xt = torch.from_numpy(X[1000:1200]).requires_grad_(True)
        want = target.explain(X[1000:1200])
        labels = target.query(X[1000:1200]).argmax(axis=1)
        picked = model(xt).gather(1, torch.from_numpy(labels)[:, None]).sum()
        (g,) = torch.autograd.grad(picked, xt)
        return float(np.sum((g.numpy() - want) ** 2) / np.sum(want**2))

    assert grad_error(matched) < 0.7 * grad_error(plain)
    with pytest.raises(QueryBudgetExceeded):
        train_gradient_matching(target, x, lam=1.0, seed=0, budget=len(x) + 1, **kw)
    with pytest.raises(InvalidParameterError, match="explain"):
        train_gradient_matching(SklearnTarget(_lr_on(X)), x, lam=1.0, seed=0, **kw)


def _lr_on(X):
    y = (X[:, 10] > X[:, 10].mean()).astype(int)
    return LogisticRegression(max_iter=500).fit(X[:300], y[:300])


def test_budget_is_never_exceeded(cancer):
    _X, model, *_ = cancer
    with pytest.raises(QueryBudgetExceeded, match="budget is 10 rows"):
        equation_solving_lr(SklearnTarget(model), seed=0, budget=10)
    with pytest.raises(QueryBudgetExceeded, match="Query budget exceeded"):
        relu_from_gradients(ReluNetTarget.random(5, 4, seed=0), seed=0, budget=50)


def test_errors_teach():
    with pytest.raises(UnknownNameError, match="Known exact attacks: .*relu_from_gradients"):
        EXACT_ATTACKS.get("relu-from-nothing")
    X, y = load_digits(return_X_y=True)
    three = SklearnTarget(LogisticRegression(max_iter=200).fit(X[:300] / 16, y[:300]))
    with pytest.raises(InvalidParameterError, match="binary model; this target has 10 classes"):
        equation_solving_lr(three, seed=0)
    with pytest.raises(InvalidParameterError, match="answers labels only"):
        equation_solving_softmax(label_only(three), seed=0)
    with pytest.raises(InvalidParameterError, match="A seed is required"):
        equation_solving_softmax(three, seed=None)
    with pytest.raises(InvalidParameterError, match="'solver' parameter of equation_solving"):
        equation_solving_softmax(three, seed=0, solver="newton")
    with pytest.raises(InvalidParameterError, match="explain"):
        relu_from_gradients(three, seed=0)
    with pytest.raises(InvalidParameterError, match="fitted scikit-learn DecisionTreeClassifier"):
        LeafTarget(DecisionTreeClassifier())
    with pytest.raises(InvalidParameterError, match="'budget' parameter of relu_from_gradients"):
        relu_from_gradients(ReluNetTarget.random(3, 2, seed=0), seed=0, budget=0)


def test_every_registered_attack_returns_an_exact_result():
    assert {
        "equation_solving_lr",
        "equation_solving_softmax",
        "equation_solving_mlp",
        "tree_path_finding",
        "lowd_meek",
        "adaptive_retraining",
        "relu_from_gradients",
        "relu_from_logits",
    } <= set(EXACT_ATTACKS.names())
