"""Model reconstruction from gradient explanations (Milli, Schmidt, Dragan, Hardt, FAT* 2019).

https://arxiv.org/abs/1807.05185

Setting: a binary classifier whose score is a two-layer ReLU network
``f(x) = Σ_i a_i ReLU(w_i·x + b_i) + c`` and whose API explains a prediction with the gradient of
the predicted class's logit. With logits ``(-f/2, f/2)`` that explanation is ``sign(f) ∇f / 2``.

Along a random line ``x(t) = x0 + t v`` the explanation is piecewise constant in ``t``: it jumps by
``±a_i w_i / 2`` where the line crosses unit i's hyperplane, and flips sign where ``f`` changes
sign.
Bisection finds every jump with ``O(log(T/η))`` explanation queries each, so the count grows with
the number of hidden units and not with the input dimension. Each jump gives one unit in a
canonical form ``s·ReLU(s·Δ·(x - p))`` (equal to the true unit up to an affine function); the
explanation at the left end of the line gives the affine part; two value queries fix the global
sign and the offset ``c``, which gradients cannot see.

The recovery derivation is ours (``../shared/reference/algorithms.md`` §3); the paper's text was not
available. Departures: the bisection width ``eta`` is relative to ``|t|``, and class flips are told
apart from unit crossings by the explanation changing to its exact negative.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from modelsteal._checks import as_rng, check_float, check_inputs, check_int, check_probabilities
from modelsteal.attacks.exact._base import (
    EXACT_ATTACKS,
    ExactResult,
    log_odds,
    n_features,
    wrap_budget,
)
from modelsteal.errors import InvalidParameterError
from modelsteal.targets import Target


class ReluNetTarget:
    """A binary two-layer ReLU network computed in float64, answering queries and explanations.

    ``f(x) = a·ReLU(W x + b) + skip·x + c``; logits are ``(-f/2, f/2)``, so ``p_1 = σ(f)``.
    ``explain(x)`` is the gradient of the predicted class's logit. Inputs are validated as float64
    (not rounded to float32), so the attacks can be checked to 1e-6 and below.
    """

    n_classes = 2
    output_kind = "probabilities"

    def __init__(
        self,
        W: np.ndarray,
        b: np.ndarray,
        a: np.ndarray,
        c: float = 0.0,
        *,
        skip: np.ndarray | None = None,
    ) -> None:
        self.W = np.atleast_2d(np.asarray(W, dtype=np.float64))
        h, d = self.W.shape
        self.b = np.asarray(b, dtype=np.float64).reshape(h)
        self.a = np.asarray(a, dtype=np.float64).reshape(h)
        self.c = float(c)
        self.skip = np.zeros(d) if skip is None else np.asarray(skip, dtype=np.float64).reshape(d)
        if not all(np.isfinite(v).all() for v in (self.W, self.b, self.a, self.skip)):
            raise InvalidParameterError("ReluNetTarget parameters must be finite.")
        self.input_shape = (d,)

    @classmethod
    def random(cls, d: int, h: int, *, seed: int | np.random.Generator) -> ReluNetTarget:
        """A random network: W ~ N(0, 1/d), b ~ N(0, 1), a ~ N(0, 1/h), c ~ N(0, 0.1)."""
        d = check_int(d, name="d", owner="ReluNetTarget.random", low=1)
        h = check_int(h, name="h", owner="ReluNetTarget.random", low=1)
        rng = as_rng(seed)
        return cls(
            rng.normal(0, 1 / math.sqrt(d), (h, d)),
            rng.normal(0, 1, h),
            rng.normal(0, 1 / math.sqrt(h), h),
            float(rng.normal(0, 0.1)),
        )

    @classmethod
    def from_module(cls, module: Any) -> ReluNetTarget:
        """From a torch ``Linear(d, h) -> ReLU -> Linear(h, k)`` with ``k`` in {1, 2}.

        ``k = 1``: the output is the positive score ``f``. ``k = 2`` (a registry ``"mlp"`` with
        one hidden layer and two classes, e.g. a ``modelsteal train`` bundle): the score is the
        logit difference ``f = z_1 - z_0``, so ``a = W2[1] - W2[0]`` and ``c = b2[1] - b2[0]``,
        and this target answers the same probabilities as the module.
        """
        import torch

        layers = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
        acts = [m for m in module.modules() if not list(m.children())]
        relu_between = len(layers) == 2 and any(
            isinstance(m, torch.nn.ReLU)
            for m in acts[acts.index(layers[0]) + 1 : acts.index(layers[1])]
        )
        if len(layers) != 2 or layers[1].out_features not in (1, 2) or not relu_between:
            raise InvalidParameterError(
                "ReluNetTarget.from_module needs Linear(d, h) -> ReLU -> Linear(h, 1 or 2) (a "
                "registry 'mlp' with one hidden layer and 2 classes). Got "
                f"{len(layers)} Linear layers"
                + (f" ending in {layers[-1].out_features} outputs" if layers else "")
                + " instead."
            )
        first, second = layers
        W2 = second.weight.detach().double().numpy()
        b2 = second.bias.detach().double().numpy()
        a, c = (W2[0], b2[0]) if len(b2) == 1 else (W2[1] - W2[0], b2[1] - b2[0])
        return cls(
            first.weight.detach().double().numpy(),
            first.bias.detach().double().numpy(),
            a,
            float(c),
        )

    from_bundle_model = from_module

    def score(self, x: np.ndarray) -> np.ndarray:
        """``f(x)`` for a float64 batch (evaluation helper, not a query)."""
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        return np.maximum(x @ self.W.T + self.b, 0.0) @ self.a + x @ self.skip + self.c

    def _check(self, x: np.ndarray, where: str) -> np.ndarray:
        return check_inputs(x, input_shape=self.input_shape, where=where, dtype=np.float64)

    def query(self, x: np.ndarray) -> np.ndarray:
        f = self.score(self._check(x, "ReluNetTarget.query"))
        p1 = 1.0 / (1.0 + np.exp(-f))
        p0 = 1.0 / (1.0 + np.exp(f))  # not 1 - p1: keeps precision on both sides
        return check_probabilities(np.stack([p0, p1], axis=1), n=len(f), where="ReluNetTarget")

    def explain(self, x: np.ndarray) -> np.ndarray:
        x = self._check(x, "ReluNetTarget.explain")
        pre = x @ self.W.T + self.b
        grad = ((pre > 0) * self.a) @ self.W + self.skip
        sign = np.where(self.score(x) > 0, 1.0, -1.0)  # argmax ties go to class 0
        return 0.5 * sign[:, None] * grad

    def __repr__(self) -> str:
        return f"ReluNetTarget(d={self.W.shape[1]}, h={self.W.shape[0]})"


def _same(g1: np.ndarray, g2: np.ndarray, tol: float) -> bool:
    return float(np.abs(g1 - g2).max()) <= tol * (
        float(np.abs(g1).max() + np.abs(g2).max()) + 1e-300
    )


@EXACT_ATTACKS.register("relu_from_gradients")
def relu_from_gradients(
    target: Target,
    *,
    seed: int | np.random.Generator,
    radius: float = 1e4,
    eta: float = 1e-10,
    tol: float = 1e-9,
    budget: int | None = None,
) -> ExactResult:
    """Reconstruct a binary two-layer ReLU network from gradient explanations (+ 2 value queries).

    The line ``x0 + t v`` (``x0, v ~ N(0, I)``) is searched for ``t`` in ``[-radius, radius]``; a
    unit whose hyperplane the line crosses outside that range is missed (probability about
    ``2 / (π · radius)`` per unit). Bisection stops at width ``eta · max(1, |t|)``; explanations
    are equal when they agree to ``tol`` relative. ``budget`` defaults to 1,000,000 rows.
    """
    owner = "relu_from_gradients"
    if not hasattr(target, "explain"):
        raise InvalidParameterError(
            f"{owner} needs a target that answers explanations (an explain(x) method); "
            f"{target!r} has none."
        )
    if target.n_classes != 2:
        raise InvalidParameterError(
            f"{owner} reconstructs a binary classifier; this target has {target.n_classes} classes."
        )
    radius = check_float(radius, name="radius", owner=owner, low=0.0, low_open=True)
    eta = check_float(eta, name="eta", owner=owner, low=0.0, low_open=True)
    tol = check_float(tol, name="tol", owner=owner, low=0.0, low_open=True)
    d = n_features(target)
    shape = tuple(target.input_shape)
    oracle = wrap_budget(target, budget, default=1_000_000, owner=owner)
    rng = as_rng(seed)
    x0 = rng.normal(size=d)
    v = rng.normal(size=d)

    def explain(ts: list[float]) -> np.ndarray:
        pts = x0[None] + np.asarray(ts)[:, None] * v[None]
        return np.asarray(oracle.explain(pts.reshape(len(ts), *shape)), dtype=np.float64).reshape(
            len(ts), d
        )

    g_ends = explain([-radius, radius])
    known = {-radius: g_ends[0], radius: g_ends[1]}
    pending = [(-radius, radius)]
    breaks: list[tuple[float, float]] = []
    levels = 0
    while pending:
        todo, mids = [], []
        for lo, hi in pending:
            if _same(known[lo], known[hi], tol):
                continue
            if hi - lo <= eta * max(1.0, abs(lo), abs(hi)):
                breaks.append((lo, hi))
                continue
            mid = 0.5 * (lo + hi)
            mids.append(mid)
            todo.append((lo, mid, hi))
        if mids:
            for m, g in zip(mids, explain(mids), strict=True):
                known[m] = g
            levels += 1
        pending = [p for lo, m, hi in todo for p in ((lo, m), (m, hi))]
    breaks.sort()

    # Walk left to right: a flip of the predicted class turns the explanation into its negative.
    sign = 1.0
    dirs, points, flips = [], [], []
    for lo, hi in breaks:
        g_lo, g_hi = known[lo], known[hi]
        if _same(g_hi, -g_lo, 1e-6) and np.abs(g_lo).max() > 0:
            sign = -sign
            flips.append(0.5 * (lo + hi))
            continue
        dirs.append(sign * (g_hi - g_lo))
        points.append(x0 + 0.5 * (lo + hi) * v)
    start_sign = 1.0  # the sign at t = -radius, relative; the global sign σ is fixed below
    affine = start_sign * known[-radius]  # every canonical unit is off at the left end
    D = np.array(dirs).reshape(len(dirs), d)
    P = np.array(points).reshape(len(points), d)
    s = np.sign(D @ v)
    norms = np.linalg.norm(D, axis=1)
    U = (s / np.where(norms > 0, norms, 1.0))[:, None] * D  # unit-norm weights, on along +v
    offsets = -np.einsum("ij,ij->i", U, P)
    outer = s * norms  # c̃_k(x) = s_k |Δ_k| ReLU(u_k·x + b_k)

    def h_of(x: np.ndarray) -> np.ndarray:
        return np.maximum(x @ U.T + offsets, 0.0) @ outer + x @ affine

    # f = 2σ h + β: two value queries (at x0 and x0 + v) fix σ and β.
    xv = np.stack([x0, x0 + v])
    fv = log_odds(oracle.query(xv.reshape(2, *shape)))[:, 1]
    if not np.isfinite(fv).all():
        raise InvalidParameterError(
            f"{owner}: the value queries came back saturated (probability 0 or 1), so the offset "
            "cannot be read; try another seed."
        )
    hv = h_of(xv)
    sigma = 1.0 if (fv[1] - fv[0]) * (hv[1] - hv[0]) >= 0 else -1.0
    beta = float(np.mean(fv - 2 * sigma * hv))
    params = {
        "W": U,
        "b": offsets,
        "a": 2 * sigma * outer,
        "skip": 2 * sigma * affine,
        "c": beta,
    }
    model = ReluNetTarget(params["W"], params["b"], params["a"], beta, skip=params["skip"])
    return ExactResult(
        name=owner,
        params=params,
        model=model,
        queries=oracle.spent,
        budget=oracle.budget,
        info={
            "units_found": len(dirs),
            "class_flips": len(flips),
            "explanations": oracle.spent - 2,
            "value_queries": 2,
            "bisection_levels": levels,
        },
    )
