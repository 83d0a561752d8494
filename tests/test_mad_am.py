"""MAD (prediction poisoning) and Adaptive Misinformation: promises, equivalence, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from modelsteal.defenses import build_defense, defended
from modelsteal.defenses.am import (
    AdaptiveMisinformation,
    reverse_cross_entropy,
    train_misinformation_model,
    train_with_outlier_exposure,
    uniform_cross_entropy,
)
from modelsteal.defenses.mad import MAD, argmax_vertices, mad_objective, mad_per_sample
from modelsteal.errors import InputValidationError, InvalidParameterError
from modelsteal.models import (
    TrainConfig,
    build_model,
    predict_proba,
    soft_cross_entropy,
    train_model,
)
from modelsteal.targets import TorchTarget

C, D = 10, 16


def _data(n: int, c: int = C, shape: tuple[int, ...] = (D,), seed: int = 0, conc: float = 0.3):
    rng = np.random.default_rng(seed)
    x = rng.random((n, *shape), dtype=np.float32)
    y = rng.dirichlet(np.full(c, conc), size=n)
    return x, y


def _hard_rows(c: int = C) -> np.ndarray:
    """One-hot, uniform, tied tops, exact zeros and near-ties."""
    rows = [np.eye(c)[2], np.full(c, 1 / c), np.zeros(c), np.zeros(c), np.zeros(c)]
    rows[2][[1, 3]] = 0.5
    rows[3][[0, 2, 3]] = [0.4, 0.4, 0.2]
    rows[4][:] = 1.0
    rows[4][c - 1] += 1e-12
    return np.array([r / r.sum() for r in rows])


def _explicit_jacobian(proxy: nn.Module, xi: np.ndarray, layer: str) -> np.ndarray:
    """G (C × D) by autograd, written independently of the module under test."""
    params = [p for p in proxy.parameters()]
    if layer == "last":
        params = [[m for m in proxy.modules() if isinstance(m, nn.Linear)][-1].weight]
    z = proxy(torch.as_tensor(xi[None]))
    nll = -torch.log_softmax(z, dim=1)[0]
    rows = [
        torch.cat([g.reshape(-1) for g in torch.autograd.grad(nll[k], params, retain_graph=True)])
        for k in range(len(nll))
    ]
    return torch.stack(rows).double().numpy()


def _angular(ytilde: np.ndarray, y: np.ndarray, g: np.ndarray) -> float:
    u, v = g.T @ ytilde, g.T @ y
    return float(np.sum((u / np.linalg.norm(u) - v / np.linalg.norm(v)) ** 2))


# ---- MAD ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("oracle", ["extreme", "argmax", "random", "argmin"])
@pytest.mark.parametrize("ydist", ["l1", "l2"])
@pytest.mark.parametrize("epsilon", [1e-6, 0.3, 2.0])
def test_mad_rows_stay_on_the_simplex_and_in_the_budget(oracle, ydist, epsilon):
    x, y = _data(40)
    y = np.vstack([y, _hard_rows()])
    x = np.vstack([x, _data(5, seed=1)[0]])
    defense = MAD(epsilon=epsilon, oracle=oracle, ydist=ydist, seed=0)
    out = defense.perturb(y, x=x)
    assert out.shape == y.shape and np.all(out >= 0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-12)
    p = 1 if ydist == "l1" else 2
    assert np.all(np.linalg.norm(out - y, ord=p, axis=1) <= epsilon + 1e-9)
    assert defense.max_l1 == (epsilon if ydist == "l1" else None)
    assert defense.preserves_argmax == (oracle == "argmax")


@pytest.mark.parametrize("c", [4, 10, 13])
@pytest.mark.parametrize("epsilon", [1e-9, 1e-4, 0.5, 2.0])
def test_mad_argmax_oracle_keeps_the_argmax_even_with_ties(c, epsilon):
    x, y = _data(30, c=c)
    y = np.vstack([y, _hard_rows(c)])
    x = np.vstack([x, _data(5, seed=1)[0]])
    out = MAD(epsilon=epsilon, oracle="argmax", seed=0).perturb(y, x=x)
    np.testing.assert_array_equal(out.argmax(axis=1), y.argmax(axis=1))
    if epsilon >= 0.5:  # and it does move the answers
        assert np.abs(out - y).sum(axis=1).mean() > 0.1


CASES = [
    # (input shape, classes, oracle, max_grad_layer, objmax, ydist)
    ((D,), C, "extreme", "last", True, "l1"),
    ((D,), C, "argmax", "last", True, "l1"),
    ((D,), C, "extreme", "last", False, "l2"),
    ((D,), C, "argmax", "last", False, "l2"),
    ((D,), C, "random", "last", True, "l1"),
    ((D,), C, "argmin", "last", True, "l2"),
    ((D,), 14, "argmax", "last", True, "l1"),  # greedy oracle, stops when the set is full
    ((D,), 50, "argmax", "last", True, "l1"),  # greedy oracle, stops at 1024 evaluations
    ((D,), 50, "extreme", "last", False, "l1"),
    ((1, 8, 8), C, "extreme", "last", True, "l1"),
    ((1, 8, 8), C, "argmax", "last", True, "l1"),
    ((D,), C, "extreme", "all", True, "l1"),
    ((D,), C, "argmax", "all", False, "l2"),
    ((1, 8, 8), C, "extreme", "all", True, "l1"),
]


@pytest.mark.parametrize(("shape", "c", "oracle", "layer", "objmax", "ydist"), CASES)
def test_batched_mad_matches_the_per_sample_reference(shape, c, oracle, layer, objmax, ydist):
    # With the last layer, the unnormalised surrogate is ‖h‖²‖e_k − y‖²: the oracle becomes
    # argmin y, and classes with y_k below float32 precision tie; keep the rows away from that.
    x, y = _data(8 if c > 20 else 24, c=c, shape=shape, conc=0.3 if objmax else 1.0)
    proxy = None
    if layer == "all" and len(shape) == 3:  # the per-sample reference is slow with the full
        proxy = build_model("cnn", shape, c, seed=3, channels=(4,), hidden=16)  # Jacobian
    elif layer == "all":
        proxy = build_model("mlp", shape, c, seed=3, hidden=(32,))
    defense = MAD(
        epsilon=0.7,
        oracle=oracle,
        max_grad_layer=layer,
        objmax=objmax,
        ydist=ydist,
        proxy=proxy,
        seed=3,
    )
    batched = defense.perturb(y, x=x)
    reference = mad_per_sample(defense, y, x)
    np.testing.assert_allclose(batched, reference, rtol=0, atol=1e-9)


def test_mad_is_seeded():
    x, y = _data(50)
    a = MAD(seed=5).perturb(y, x=x)
    np.testing.assert_array_equal(a, MAD(seed=5).perturb(y, x=x))
    assert not np.array_equal(a, MAD(seed=6).perturb(y, x=x))
    r = MAD(oracle="random", seed=5)
    np.testing.assert_array_equal(r.perturb(y, x=x), r.perturb(y, x=x))  # no hidden state


@pytest.mark.parametrize("layer", ["last", "all"])
@pytest.mark.parametrize("oracle", ["extreme", "argmax"])
def test_bfloat16_proxy_keeps_the_promises(oracle, layer):
    """The proxy's passes in bfloat16: the budget, the simplex and (argmax oracle) the argmax
    hold as in float32; answers are seeded, and most equal float32's."""
    x, y = _data(40, shape=(1, 8, 8))
    y = np.concatenate([y, _hard_rows()])
    x = np.concatenate([x, _data(len(_hard_rows()), shape=(1, 8, 8), seed=1)[0]])
    kw = {"epsilon": 0.5, "oracle": oracle, "max_grad_layer": layer}
    dtypes: set[torch.dtype] = set()  # of every linear layer's output, whichever copy runs

    def record(module, inputs, output):
        if isinstance(module, torch.nn.Linear):
            dtypes.add(output.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        out = MAD(proxy_dtype="bfloat16", **kw).perturb(y, x=x)
    finally:
        handle.remove()
    assert dtypes == {torch.bfloat16}  # the proxy's passes did run in bfloat16
    assert np.all(out >= 0) and np.allclose(out.sum(axis=1), 1.0, atol=1e-12)
    assert np.all(np.abs(out - y).sum(axis=1) <= 0.5 + 1e-9)
    if oracle == "argmax":
        assert np.all(out.argmax(axis=1) == y.argmax(axis=1))
    np.testing.assert_array_equal(out, MAD(proxy_dtype="bfloat16", **kw).perturb(y, x=x))
    same = np.abs(out - MAD(**kw).perturb(y, x=x)).max(axis=1) <= 1e-12
    assert same.mean() >= 0.5


@pytest.mark.parametrize("layer", ["last", "all"])
def test_jacobian_gram_is_g_g_transpose(layer):
    x, _ = _data(6)
    defense = MAD(max_grad_layer=layer, seed=1)
    gram = defense.jacobian_gram(x, C)
    proxy = defense.proxy_model(x, C)
    for i in range(len(x)):
        g = _explicit_jacobian(proxy, x[i], layer)
        expected = g @ g.T  # float32 gradients: compare at float32 precision
        np.testing.assert_allclose(gram[i], expected, rtol=0, atol=1e-6 * np.abs(expected).max())


def test_image_proxy_gram_follows_changes_to_the_proxy():
    """Images go through a channels-last copy of the proxy; it must track the proxy's weights."""
    shape = (1, 8, 8)
    x, y = _data(6, shape=shape)
    proxy = build_model("cnn", shape, C, seed=4, channels=(4,), hidden=16)
    defense = MAD(epsilon=0.7, proxy=proxy, seed=0)

    def check() -> None:
        gram = defense.jacobian_gram(x, C)
        for i in range(len(x)):
            g = _explicit_jacobian(proxy, x[i], "last")
            expected = g @ g.T
            atol = 1e-5 * np.abs(expected).max()
            np.testing.assert_allclose(gram[i], expected, rtol=0, atol=atol)

    check()
    with torch.no_grad():  # changed in place ...
        for p in proxy.parameters():
            p.mul_(-1.5)
    check()
    proxy[0].weight = nn.Parameter(torch.ones_like(proxy[0].weight))  # ... or replaced
    check()
    np.testing.assert_allclose(defense.perturb(y, x=x), mad_per_sample(defense, y, x), atol=1e-9)


@pytest.mark.parametrize("objmax", [True, False])
def test_extreme_oracle_picks_the_best_vertex(objmax):
    x, y = _data(20)
    defense = MAD(oracle="extreme", objmax=objmax, seed=2)
    ystar = defense.oracle_targets(y, x)
    proxy = defense.proxy_model(x, C)
    for i in range(len(x)):
        g = _explicit_jacobian(proxy, x[i], "last")
        if objmax:
            vals = [_angular(e, y[i], g) for e in np.eye(C)]
        else:
            vals = [float(np.sum((g.T @ (e - y[i])) ** 2)) for e in np.eye(C)]
        chosen = int(ystar[i].argmax())
        assert ystar[i, chosen] == 1.0
        assert vals[chosen] >= max(vals) - 1e-9 * max(1.0, max(vals))


def test_argmax_oracle_picks_the_best_set_containing_the_top_class():
    x, y = _data(10, c=6)
    defense = MAD(oracle="argmax", seed=2)
    ystar = defense.oracle_targets(y, x)
    proxy = defense.proxy_model(x, 6)
    for i in range(len(x)):
        top = int(y[i].argmax())
        verts = argmax_vertices(6, top)
        assert len(verts) == 2**5 and np.all(verts.argmax(axis=1) == top)
        g = _explicit_jacobian(proxy, x[i], "last")
        vals = [_angular(v, y[i], g) for v in verts]
        assert _angular(ystar[i], y[i], g) >= max(vals) - 1e-9
        assert ystar[i].argmax() == top


def test_mad_objective_of_y_itself_is_zero_and_bounded_by_four():
    x, y = _data(8)
    gram = MAD(seed=0).jacobian_gram(x, C)
    np.testing.assert_allclose(mad_objective(y[:, None, :], y, gram)[:, 0], 0.0, atol=1e-12)
    vals = mad_objective(np.eye(C), y, gram)
    assert vals.shape == (8, C) and np.all((vals >= 0) & (vals <= 4 + 1e-12))
    # a zero Jacobian (dead proxy) gives a finite, deterministic answer instead of NaN
    assert np.all(mad_objective(np.eye(C), y, np.zeros_like(gram)) == 0)


def test_mad_with_a_given_proxy_and_through_a_defended_target(digits_mlp, digits):
    X, _ = digits
    target = TorchTarget(digits_mlp, input_shape=(64,))
    shielded = defended(target, "mad", epsilon=0.5, oracle="argmax", proxy=digits_mlp)
    clean, out = target.query(X[:40]), shielded.query(X[:40])
    np.testing.assert_array_equal(out.argmax(axis=1), clean.argmax(axis=1))
    assert np.all(np.abs(out - clean).sum(axis=1) <= 0.5 + 1e-9)
    assert np.abs(out - clean).sum(axis=1).mean() > 0.2


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"epsilon": 0}, r"'epsilon' parameter of MAD must be a float in \(0, 2\]. Got 0"),
        ({"epsilon": -1.0}, r"'epsilon' parameter of MAD must be a float in \(0, 2\]. Got -1.0"),
        ({"epsilon": 2.5}, r"'epsilon' parameter of MAD must be a float in \(0, 2\]. Got 2.5"),
        (
            {"oracle": "best"},
            r"'oracle' parameter of MAD must be one of 'extreme', 'argmax', 'random', 'argmin'",
        ),
        ({"ydist": "kl"}, r"'ydist' parameter of MAD must be one of 'l1', 'l2'. Got 'kl'"),
        ({"objmax": 1}, r"'objmax' parameter of MAD must be a bool. Got 1"),
        ({"max_grad_layer": "first"}, r"'max_grad_layer' parameter of MAD must be one of"),
        ({"proxy_arch": "resnet"}, r"'proxy_arch' parameter of MAD must be one of 'auto', "),
        ({"proxy": "model.pt"}, r"'proxy' parameter of MAD must be a torch.nn.Module"),
        ({"seed": -1}, r"'seed' parameter of MAD must be an int in \[0, inf\)"),
        (
            {"proxy_dtype": "float16"},
            r"'proxy_dtype' parameter of MAD must be one of 'float32', 'bfloat16'. Got 'float16'",
        ),
    ],
)
def test_mad_parameter_errors(params, match):
    with pytest.raises(InvalidParameterError, match=match):
        build_defense("mad", **params)


def test_mad_input_errors():
    x, y = _data(4)
    with pytest.raises(InvalidParameterError, match=r"MAD needs the queried inputs"):
        MAD().perturb(y)
    with pytest.raises(InvalidParameterError, match=r"y has 4 rows but x has 3"):
        MAD().perturb(y, x=x[:3])
    defense = MAD()
    defense.perturb(y, x=x)
    with pytest.raises(InputValidationError, match=r"built its proxy for inputs of shape \(16,\)"):
        defense.perturb(y, x=np.zeros((4, 8), dtype=np.float32))
    scaled = nn.Sequential(nn.Linear(D, C), nn.Softmax(dim=1))
    with pytest.raises(InvalidParameterError, match=r"max_grad_layer='all' for this proxy"):
        MAD(proxy=scaled).perturb(y, x=x)
    conv_only = nn.Sequential(nn.Unflatten(1, (1, D)), nn.Conv1d(1, C, D), nn.Flatten())
    with pytest.raises(InvalidParameterError, match=r"has none. Use max_grad_layer='all'"):
        MAD(proxy=conv_only).perturb(y, x=x)
    out = MAD(proxy=conv_only, max_grad_layer="all").perturb(y, x=x)  # 'all' needs no Linear
    np.testing.assert_allclose(out.sum(axis=1), 1.0)


# ---- Adaptive Misinformation -----------------------------------------------------------------


@pytest.fixture(scope="module")
def ood_models(digits):
    """An OE-trained and a plainly trained MLP on digits, and a misinformation model."""
    X, y = digits
    rng = np.random.default_rng(0)
    noise = rng.random((1000, 64), dtype=np.float32)
    config = TrainConfig(epochs=20, lr=3e-3)
    plain = train_model(
        build_model("mlp", (64,), 10, seed=0, hidden=(64,)),
        X[:1000],
        y[:1000],
        config=config,
        seed=0,
    )
    oe = train_with_outlier_exposure(
        build_model("mlp", (64,), 10, seed=0, hidden=(64,)),
        X[:1000],
        y[:1000],
        noise,
        config=config,
        seed=0,
    )
    mis = train_misinformation_model(
        build_model("mlp", (64,), 10, seed=1, hidden=(64,)),
        X[:1000],
        y[:1000],
        noise,
        predict_proba(oe, noise),
        config=config,
        seed=0,
    )
    return plain, oe, mis


def _mis_model(seed: int = 0) -> nn.Module:
    return build_model("logreg", (D,), C, seed=seed)


def test_am_alpha_switches_at_tau():
    am = AdaptiveMisinformation(misinformation_model=_mis_model(), tau=0.7)
    y = np.array([[0.95, 0.05], [0.75, 0.25], [0.7, 0.3], [0.65, 0.35], [0.5, 0.5]])
    alpha = am.alpha(y)
    assert alpha[0] < 1e-20 and alpha[1] < 1e-20 and alpha[3] > 1 - 1e-15 and alpha[4] == 1.0
    assert alpha[2] == pytest.approx(0.5)
    steep = AdaptiveMisinformation(misinformation_model=_mis_model(), nu=1e12)
    assert np.all(np.isfinite(steep.alpha(y)))
    fixed = AdaptiveMisinformation(misinformation_model=_mis_model(), tau=0.3, adaptive=False)
    np.testing.assert_array_equal(fixed.alpha(y), 0.3)


def test_am_mixes_in_the_misinformation_answer():
    x, y = _data(50)
    y[:10] = np.eye(C)[np.arange(10)] * 0.999 + 0.001 / C  # confident rows
    am = AdaptiveMisinformation(misinformation_model=_mis_model(), tau=0.9)
    out = am.perturb(y, x=x)
    mis = am.misinformation(x)
    assert np.all(out >= 0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(out[:10], y[:10], atol=1e-12)  # α ≈ 0 above τ
    low = y.max(axis=1) < 0.8
    np.testing.assert_allclose(out[low], mis[low], atol=1e-12)  # α ≈ 1 well below τ
    assert am.preserves_argmax is False and am.max_l1 is None and am.needs_inputs


def test_outlier_exposure_lowers_confidence_on_outliers(ood_models, digits):
    plain, oe, _ = ood_models
    X, y = digits
    noise = np.random.default_rng(1).random((300, 64), dtype=np.float32)
    msp = {
        name: (predict_proba(m, X[1000:]).max(axis=1), predict_proba(m, noise).max(axis=1))
        for name, m in [("plain", plain), ("oe", oe)]
    }
    assert msp["oe"][1].mean() < msp["oe"][0].mean()
    assert msp["oe"][1].mean() < msp["plain"][1].mean()
    accuracy = (predict_proba(oe, X[1000:]).argmax(axis=1) == y[1000:]).mean()
    assert accuracy > 0.8  # OE keeps the model useful


def test_misinformation_model_avoids_the_true_class(ood_models, digits):
    _, oe, mis = ood_models
    X, y = digits
    p = predict_proba(mis, X[1000:])
    assert p[np.arange(len(p)), y[1000:]].mean() < 1 / 10
    noise = np.random.default_rng(1).random((300, 64), dtype=np.float32)
    q = predict_proba(mis, noise)
    assert q[np.arange(300), predict_proba(oe, noise).argmax(axis=1)].mean() < 1 / 10
    # defended: in-distribution answers mostly kept, outliers answered by misinformation
    target = TorchTarget(oe, input_shape=(64,))
    shielded = defended(target, "am", misinformation_model=mis, tau=0.5)
    kept = (shielded.query(X[1000:]).argmax(axis=1) == target.query(X[1000:]).argmax(axis=1)).mean()
    flipped = (shielded.query(noise).argmax(axis=1) != target.query(noise).argmax(axis=1)).mean()
    assert kept > 0.8 and flipped > 0.9


def test_am_training_is_seeded(digits):
    X, y = digits
    noise = np.random.default_rng(0).random((100, 64), dtype=np.float32)
    config = TrainConfig(epochs=2)

    def weights(seed: int) -> list[torch.Tensor]:
        m = build_model("mlp", (64,), 10, seed=0, hidden=(16,), dropout=0.2)
        train_with_outlier_exposure(m, X[:300], y[:300], noise, config=config, seed=seed)
        return [p.detach().clone() for p in m.parameters()]

    a, b, c = weights(4), weights(4), weights(5)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a, c, strict=True))


def test_am_losses():
    z = torch.randn(7, 5, dtype=torch.float64)
    uniform = torch.full((7, 5), 0.2, dtype=torch.float64)
    torch.testing.assert_close(uniform_cross_entropy(z), soft_cross_entropy(z, uniform))
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1])
    naive = -torch.log(1 - torch.softmax(z, dim=1)[torch.arange(7), labels] + 1e-7).mean()
    torch.testing.assert_close(reverse_cross_entropy(z, labels), naive)
    huge = torch.zeros(2, 3)
    huge[:, 0] = 1e4  # p_y = 1 in float32: the loss is capped by the 1e-7 guard, not inf/NaN
    val = reverse_cross_entropy(huge, torch.tensor([0, 0]))
    assert torch.isfinite(val) and float(val) == pytest.approx(-np.log(1e-7), rel=1e-4)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({}, r"'misinformation_model' parameter of AdaptiveMisinformation must be a torch.nn"),
        ({"misinformation_model": "m.pt"}, r"must be a torch.nn.Module .*Got str instead"),
        (
            {"misinformation_model": nn.Linear(2, 2), "tau": 1.5},
            r"'tau' parameter of AdaptiveMisinformation must be a float in \[0, 1\]. Got 1.5",
        ),
        (
            {"misinformation_model": nn.Linear(2, 2), "nu": 0},
            r"'nu' parameter of AdaptiveMisinformation must be a float in \(0, inf\). Got 0",
        ),
        (
            {"misinformation_model": nn.Linear(2, 2), "adaptive": "yes"},
            r"'adaptive' parameter of AdaptiveMisinformation must be a bool. Got 'yes'",
        ),
    ],
)
def test_am_parameter_errors(params, match):
    with pytest.raises(InvalidParameterError, match=match):
        build_defense("am", **params)


def test_am_input_errors(digits):
    x, y = _data(4)
    am = AdaptiveMisinformation(misinformation_model=_mis_model())
    with pytest.raises(InvalidParameterError, match=r"needs the queried inputs"):
        am.perturb(y)
    with pytest.raises(InputValidationError, match=r"returned shape \(4, 10\) for answers"):
        am.perturb(np.full((4, 3), 1 / 3), x=x)
    X, labels = digits
    model = build_model("logreg", (64,), 10, seed=0)
    with pytest.raises(InputValidationError, match=r"y_in has 5 rows but the inputs have 10"):
        train_with_outlier_exposure(model, X[:10], labels[:5], X[:3], seed=0)
    with pytest.raises(
        InputValidationError, match=r"target_labels_ood: labels must be in \[0, 9\]"
    ):
        train_misinformation_model(model, X[:10], labels[:10], X[:3], np.array([0, 1, 12]), seed=0)


def test_last_layer_surrogate_objective_ignores_the_proxy():
    # Gᵀ(ỹ − y) = −vec((ỹ − y) hᵀ) on the simplex: the surrogate is ‖h‖²‖ỹ − y‖², so the extreme
    # oracle picks the least likely class whatever the proxy is.
    x, y = _data(60, conc=1.0)
    surrogate = MAD(objmax=False, seed=0).perturb(y, x=x)
    np.testing.assert_array_equal(surrogate, MAD(oracle="argmin").perturb(y, x=x))
