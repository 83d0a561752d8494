"""`modelsteal exact NAME --target PATH` end to end: linear, tree and ReLU targets, and errors."""

from __future__ import annotations

import json

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier
from typer.testing import CliRunner

from modelsteal.cli import app
from modelsteal.data import load_splits
from modelsteal.models import ModelInfo, TrainConfig, build_model, save_model, train_model

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result, result.output


@pytest.fixture(scope="module")
def cancer():
    splits = load_splits("breast_cancer", seed=0, ood=None)
    X = splits.target_train.X.reshape(len(splits.target_train.X), -1)
    return X, splits.target_train.y, splits.input_shape


def test_equation_solving_on_a_logistic_regression(tmp_path, cancer):
    X, y, _ = cancer
    path = tmp_path / "lr.joblib"
    joblib.dump(LogisticRegression(max_iter=5000).fit(X, y), path)
    out = tmp_path / "run"
    result, text = invoke(
        "exact", "equation-solving-lr", "--target", path, "--data", "breast_cancer", "--out", out
    )
    assert result.exit_code == 0, text
    report = json.loads((out / "result.json").read_text())
    assert report["queries"] == X.shape[1] + 1
    assert report["agreement_test"] == 1.0 and report["agreement_uniform"] == 1.0
    params = np.load(out / "params.npz")
    assert params["w"].shape == (X.shape[1],)


def test_tree_path_finding_on_a_small_tree(tmp_path, cancer):
    X, y, _ = cancer
    path = tmp_path / "tree.joblib"
    joblib.dump(DecisionTreeClassifier(max_leaf_nodes=8, random_state=0).fit(X, y), path)
    out = tmp_path / "run"
    result, text = invoke(
        "exact", "tree-path-finding", "--target", path, "--data", "breast_cancer", "--out", out
    )
    assert result.exit_code == 0, text
    report = json.loads((out / "result.json").read_text())
    assert report["info"]["leaves_found"] == report["info"]["leaves_total"] == 8
    assert report["agreement_test"] == 1.0 and report["agreement_uniform"] == 1.0
    assert "queries" in text


def test_relu_from_gradients_on_a_trained_mlp_bundle(tmp_path, cancer):
    X, y, shape = cancer
    mean, std = X.mean(0), X.std(0)
    Xs = ((X - mean) / std).astype(np.float32)  # the bundle sees the raw features
    model = build_model("mlp", shape, 2, seed=0, hidden=(6,))
    train_model(model, Xs, y, config=TrainConfig(epochs=5), seed=0)
    import torch

    with torch.no_grad():  # fold the standardisation into the first layer
        first = model[1]
        w = first.weight / torch.from_numpy(std.astype(np.float32))
        first.bias -= w @ torch.from_numpy(mean.astype(np.float32))
        first.weight.copy_(w)
    path = save_model(
        tmp_path / "mlp.pt",
        model,
        ModelInfo(
            arch="mlp",
            input_shape=shape,
            n_classes=2,
            params={"hidden": [6]},
            metadata={"data": "breast_cancer", "split_seed": 0},
        ),
    )
    for name in ("relu-from-gradients", "relu_from_logits"):
        out = tmp_path / name
        result, text = invoke("exact", name, "--target", path, "--out", out)
        assert result.exit_code == 0, text
        report = json.loads((out / "result.json").read_text())
        assert report["data"] == "breast_cancer"
        assert report["rel_error_test"] <= 1e-6 and report["rel_error_uniform"] <= 1e-6
        assert report["agreement_test"] == 1.0
        assert report["info"]["units_found"] <= 6
    # The same attack through `steal --recipe`, as for every other recipe.
    result, text = invoke(
        "steal", "--recipe", "relu-from-gradients", "--target", path, "--out", tmp_path / "via"
    )
    assert result.exit_code == 0, text
    assert json.loads((tmp_path / "via" / "result.json").read_text())["agreement_test"] == 1.0


def test_unknown_name_lists_the_known_ones(tmp_path):
    result, text = invoke("exact", "relu-from-nothing", "--target", tmp_path / "x.joblib")
    assert result.exit_code == 2
    assert "relu_from_gradients" in text and "tree_path_finding" in text


def test_wrong_model_kind_is_explained(tmp_path, cancer):
    X, y, _ = cancer
    path = tmp_path / "lr.joblib"
    joblib.dump(LogisticRegression(max_iter=5000).fit(X, y), path)
    result, text = invoke("exact", "relu-from-logits", "--target", path, "--data", "breast_cancer")
    assert result.exit_code == 2
    assert ".pt bundle" in text
