"""Contract tests over every target adapter and wrapper, and the errors that matter."""

from __future__ import annotations

import threading

import joblib
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from modelsteal.errors import (
    InputValidationError,
    InvalidParameterError,
    QueryBudgetExceeded,
    TargetContractError,
)
from modelsteal.models import ModelInfo, build_model, save_model
from modelsteal.targets import (
    FunctionTarget,
    OnnxTarget,
    SklearnTarget,
    Target,
    TorchTarget,
    budgeted,
    label_only,
    load_target,
    logged,
    output_kind,
    softmax,
)

W = np.random.default_rng(0).normal(size=(64, 10)).astype(np.float32)


def _onnx_linear_softmax(path) -> None:
    """A 64→10 linear + softmax graph written with onnx.helper (no exporter needed)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["z"]),
            helper.make_node("Softmax", ["z"], ["probabilities"], axis=1),
        ],
        "linear_softmax",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", 10])],
        initializer=[numpy_helper.from_array(W, name="W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def logreg(digits):
    X, y = digits
    return LogisticRegression(max_iter=300).fit(X[:800], y[:800])


@pytest.fixture(
    params=[
        "function",
        "function-logits",
        "torch",
        "sklearn",
        "onnx",
        "bundle-file",
        "torchscript-file",
        "export-file",
        "joblib-file",
    ]
)
def any_target(request, digits_mlp, logreg, tmp_path) -> Target:
    kind = request.param
    if kind == "function":
        return FunctionTarget(lambda x: softmax(x @ W), n_classes=10, input_shape=(64,))
    if kind == "function-logits":
        return FunctionTarget(lambda x: x @ W, n_classes=10, input_shape=(64,), output="logits")
    if kind == "torch":
        return TorchTarget(digits_mlp, input_shape=(64,))
    if kind == "sklearn":
        return SklearnTarget(logreg)
    if kind == "onnx":
        _onnx_linear_softmax(tmp_path / "m.onnx")
        return OnnxTarget(tmp_path / "m.onnx")
    if kind == "bundle-file":
        info = ModelInfo(arch="mlp", input_shape=(64,), n_classes=10, params={"hidden": [64]})
        return load_target(save_model(tmp_path / "m.pt", digits_mlp, info))
    if kind == "torchscript-file":
        torch.jit.save(torch.jit.script(digits_mlp), str(tmp_path / "ts.pt"))
        return load_target(tmp_path / "ts.pt", input_shape=(64,))
    if kind == "export-file":
        n = torch.export.Dim("n")
        program = torch.export.export(digits_mlp, (torch.zeros(2, 64),), dynamic_shapes=({0: n},))
        torch.export.save(program, str(tmp_path / "m.pt2"))
        return load_target(tmp_path / "m.pt2", input_shape=(64,))
    joblib.dump(logreg, tmp_path / "m.joblib")
    return load_target(tmp_path / "m.joblib")


def _check_probabilities(target: Target, x: np.ndarray) -> np.ndarray:
    out = target.query(x)
    assert isinstance(target, Target)
    assert out.shape == (len(x), target.n_classes) and out.dtype == np.float64
    assert np.all(out >= 0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-12)
    return out


def test_every_adapter_returns_probabilities(any_target, digits):
    X, _ = digits
    assert any_target.n_classes == 10 and tuple(any_target.input_shape) == (64,)
    _check_probabilities(any_target, X[:37])
    _check_probabilities(any_target, X[:1])  # a batch of one


def test_every_adapter_rejects_bad_inputs(any_target, digits):
    X, _ = digits
    with pytest.raises(InputValidationError, match=r"expected inputs of shape \(n, 64\)"):
        any_target.query(X[:3, :10])
    bad = X[:3].copy()
    bad[1, 5] = np.nan
    with pytest.raises(InputValidationError, match=r"must be finite; rows \[1\]"):
        any_target.query(bad)


@pytest.mark.parametrize("stack", ["budget", "labels", "logged", "all"])
def test_wrappers_return_targets(any_target, digits, stack):
    X, _ = digits
    wrapped = {
        "budget": lambda t: budgeted(t, 100),
        "labels": label_only,
        "logged": logged,
        "all": lambda t: budgeted(label_only(logged(t)), 100),
    }[stack](any_target)
    out = _check_probabilities(wrapped, X[:20])
    clean = any_target.query(X[:20])
    np.testing.assert_array_equal(out.argmax(axis=1), clean.argmax(axis=1))
    assert wrapped.n_classes == any_target.n_classes
    assert wrapped.input_shape == tuple(any_target.input_shape)


def test_label_only_is_one_hot(digits_mlp, digits):
    X, _ = digits
    t = label_only(TorchTarget(digits_mlp, input_shape=(64,)))
    out = t.query(X[:50])
    assert output_kind(t) == "labels" and output_kind(budgeted(t, 5)) == "labels"
    assert set(np.unique(out)) <= {0.0, 1.0} and np.all(out.sum(axis=1) == 1)


def test_logged_keeps_queries_and_responses(digits_mlp, digits, tmp_path):
    X, _ = digits
    t = logged(TorchTarget(digits_mlp, input_shape=(64,)))
    a, b = t.query(X[:5]), t.query(X[5:12])
    assert len(t.log) == 12
    np.testing.assert_array_equal(t.log.inputs, X[:12])
    np.testing.assert_array_equal(t.log.responses, np.vstack([a, b]))
    saved = np.load(t.log.save(tmp_path / "log.npz"))
    np.testing.assert_array_equal(saved["responses"], t.log.responses)


@settings(max_examples=60, deadline=None)
@given(budget=st.integers(0, 40), sizes=st.lists(st.integers(1, 15), max_size=12))
def test_budget_is_never_exceeded(budget, sizes):
    calls = []
    inner = FunctionTarget(
        lambda x: calls.append(len(x)) or softmax(x @ W), n_classes=10, input_shape=(64,)
    )
    t = budgeted(inner, budget)
    for n in sizes:
        before = t.spent
        if before + n <= budget:
            t.query(np.zeros((n, 64), np.float32))
            assert t.spent == before + n
        else:
            with pytest.raises(QueryBudgetExceeded) as info:
                t.query(np.zeros((n, 64), np.float32))
            assert t.spent == before  # the refused batch is not counted
            assert info.value.remaining == budget - before
        assert t.spent <= budget
    assert sum(calls) == t.spent  # every answered row was counted, nothing more reached the target


def test_budget_message_names_budget_and_request():
    t = budgeted(FunctionTarget(lambda x: softmax(x @ W), n_classes=10, input_shape=(64,)), 10)
    t.query(np.zeros((8, 64)))
    with pytest.raises(
        QueryBudgetExceeded,
        match=r"budget is 10 rows, 8 are spent and 5 more were asked for \(2 remain\)",
    ):
        t.query(np.zeros((5, 64)))


def test_budget_refused_bad_batch_is_not_counted():
    t = budgeted(FunctionTarget(lambda x: softmax(x @ W), n_classes=10, input_shape=(64,)), 10)
    with pytest.raises(InputValidationError):
        t.query(np.full((4, 64), np.nan))
    assert t.spent == 0


def test_budget_under_concurrency():
    answered = []
    lock = threading.Lock()
    t = budgeted(FunctionTarget(lambda x: softmax(x @ W), n_classes=10, input_shape=(64,)), 1000)

    def worker():
        for _ in range(100):
            try:
                out = t.query(np.zeros((7, 64), np.float32))
            except QueryBudgetExceeded:
                continue
            with lock:
                answered.append(len(out))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sum(answered) == t.spent <= 1000
    assert t.spent == 1000 - 1000 % 7  # every worker kept asking, so the budget was used up


def test_budget_parameter_validated():
    inner = FunctionTarget(lambda x: softmax(x @ W), n_classes=10, input_shape=(64,))
    with pytest.raises(
        InvalidParameterError,
        match=r"'budget' parameter of BudgetedTarget must be an int in \[0, inf\). Got -1",
    ):
        budgeted(inner, -1)


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        (lambda x: x @ W, "negative entry|sums to"),
        (lambda x: softmax(x @ W)[:, :9], "9 columns, expected n_classes=10"),
        (lambda x: softmax(x @ W)[:-1], "rows were asked for but"),
        (lambda x: np.full((len(x), 10), np.nan), "contain NaN or inf"),
        (lambda x: softmax(x @ W)[:, :, None], "2-D"),
    ],
)
def test_contract_violations_are_named(fn, match):
    t = FunctionTarget(fn, n_classes=10, input_shape=(64,))
    with pytest.raises(TargetContractError, match=match):
        t.query(np.ones((3, 64)))


def test_logits_hint_in_contract_error():
    t = FunctionTarget(lambda x: 5 * np.ones((len(x), 10)), n_classes=10, input_shape=(64,))
    with pytest.raises(TargetContractError, match="output='logits'"):
        t.query(np.ones((2, 64)))


def test_single_example_hint():
    t = FunctionTarget(lambda x: softmax(x @ W), n_classes=10, input_shape=(64,))
    with pytest.raises(InputValidationError, match=r"batch of one: x\[None\]"):
        t.query(np.ones(64))


def test_sklearn_adapter_errors(digits):
    from sklearn.svm import SVC

    X, y = digits
    with pytest.raises(InvalidParameterError, match="predict_proba.*probability=True"):
        SklearnTarget(SVC().fit(X[:100], y[:100]))
    with pytest.raises(InvalidParameterError, match="Call fit"):
        SklearnTarget(LogisticRegression())


def test_load_target_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No model file"):
        load_target(tmp_path / "missing.pt")
    (tmp_path / "m.xyz").write_text("x")
    with pytest.raises(InvalidParameterError, match="known suffixes"):
        load_target(tmp_path / "m.xyz")
    info = ModelInfo(arch="mlp", input_shape=(64,), n_classes=10, params={"hidden": [64]})
    bundle = save_model(tmp_path / "m.pt", build_model("mlp", (64,), 10, seed=0, hidden=[64]), info)
    with pytest.raises(InvalidParameterError, match=r"takes inputs of shape \(64,\), not \(30,\)"):
        load_target(bundle, input_shape=(30,))
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(InvalidParameterError, match="neither a modelsteal bundle nor"):
        load_target(tmp_path / "junk.pt")


def test_explain_returns_input_gradients(digits):
    X, _ = digits
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(64, 10))
    t = TorchTarget(module, input_shape=(64,))
    grads = t.explain(X[:6])
    pred = t.query(X[:6]).argmax(axis=1)
    weight = module[0].weight.detach().double().numpy()
    np.testing.assert_allclose(grads, weight[pred], rtol=1e-6)
    b = budgeted(t, 8)
    b.explain(X[:6])
    with pytest.raises(QueryBudgetExceeded):
        b.query(X[:3])
    assert b.spent == 6
