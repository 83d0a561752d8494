"""Equation-solving attacks (Tramèr, Zhang, Juels, Reiter, Ristenpart, USENIX Security 2016).

https://arxiv.org/abs/1609.02943

A target that returns confidences gives one equation per class and query. Binary logistic
regression ``f(x) = σ(w·x + β)`` is linear in its unknowns after ``σ⁻¹``: ``d + 1`` queries and one
linear solve recover it exactly. Softmax and one-vs-rest (OvR) regression and a one-hidden-layer MLP
are recovered, as in the paper, by minimising the cross-entropy between the candidate's outputs and
the returned probabilities over random queries (budget = α · number of unknowns).

Departures: we read the log-odds as ``log p_1 - log p_0`` (not ``σ⁻¹(p_1)``), which keeps
full float64 precision when ``p_1`` is close to 1. The softmax attack also offers
``solver="linear"``: the same log-ratio identity per class needs only ``d + 1`` queries, since each
query carries ``c - 1`` independent equations. The loss route (the paper's, the default) starts
L-BFGS from the least-squares fit of ``log p`` — for softmax that start is already the exact
answer; for OvR, whose loss is not convex, it avoids the poor stationary point reached from zeros.
No regulariser is added: it would bias the recovered parameters away from the target's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelsteal._checks import as_rng, check_choice, check_int
from modelsteal.attacks.exact._base import (
    EXACT_ATTACKS,
    ExactResult,
    check_domain,
    log_odds,
    n_features,
    wrap_budget,
)
from modelsteal.errors import InvalidParameterError
from modelsteal.targets import FunctionTarget, Target, output_kind


def _uniform_queries(
    rng: np.random.Generator, n: int, lo: np.ndarray, hi: np.ndarray, shape: tuple[int, ...]
) -> np.ndarray:
    # float32 because that is what the targets compute on: the attacker knows each row exactly.
    x = rng.uniform(lo, hi, size=(n, lo.size)).astype(np.float32)
    return x.reshape(n, *shape)


def _needs_confidences(target: Target, owner: str) -> None:
    if output_kind(target) == "labels":
        raise InvalidParameterError(
            f"{owner} solves equations on returned confidences, but this target answers labels "
            "only. Use 'lowd_meek' or 'adaptive_retraining' for label-only targets."
        )


def _finite_rows(z: np.ndarray, owner: str) -> np.ndarray:
    ok = np.isfinite(z).all(axis=1)
    if not ok.any():
        raise InvalidParameterError(
            f"{owner}: every returned probability was saturated at 0 or 1, so no equation could be "
            "read. Query a smaller 'domain' (closer to the target's decision boundary)."
        )
    return ok


@EXACT_ATTACKS.register("equation_solving_lr")
def equation_solving_lr(
    target: Target,
    *,
    seed: int | np.random.Generator,
    n_queries: int | None = None,
    domain: Any = None,
    budget: int | None = None,
) -> ExactResult:
    """Recover binary logistic regression ``σ(w·x + β)`` from ``d + 1`` confidence queries.

    ``domain``: the (low, high) box queries are drawn from (default (-1, 1) per feature).
    ``n_queries`` defaults to ``d + 1``; more rows make the least-squares solve over-determined.
    """
    owner = "equation_solving_lr"
    _needs_confidences(target, owner)
    if target.n_classes != 2:
        raise InvalidParameterError(
            f"{owner} recovers a binary model; this target has {target.n_classes} classes. Use "
            "'equation_solving_softmax'."
        )
    d = n_features(target)
    n = (
        d + 1
        if n_queries is None
        else check_int(n_queries, name="n_queries", owner=owner, low=d + 1)
    )
    lo, hi = check_domain(domain, d, owner=owner)
    oracle = wrap_budget(target, budget, default=n, owner=owner)
    rng = as_rng(seed)
    x = _uniform_queries(rng, n, lo, hi, tuple(target.input_shape))
    z = log_odds(oracle.query(x))[:, 1]
    ok = _finite_rows(z[:, None], owner)
    A = np.hstack([x.reshape(n, -1).astype(np.float64), np.ones((n, 1))])[ok]
    sol, *_ = np.linalg.lstsq(A, z[ok], rcond=None)
    w, beta = sol[:d], float(sol[d])
    residual = float(np.max(np.abs(A @ sol - z[ok]))) if ok.any() else float("nan")
    model = _linear_model(
        w[:, None] * np.array([[-0.5, 0.5]]), np.array([-beta / 2, beta / 2]), target
    )
    return ExactResult(
        name=owner,
        params={"w": w, "b": beta},
        model=model,
        queries=oracle.spent,
        budget=oracle.budget,
        info={"unknowns": d + 1, "max_residual": residual, "usable_equations": int(ok.sum())},
    )


def _linear_model(W: np.ndarray, b: np.ndarray, like: Target) -> FunctionTarget:
    shape = tuple(like.input_shape)

    def logits(x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), -1).astype(np.float64) @ W + b

    return FunctionTarget(logits, n_classes=W.shape[1], input_shape=shape, output="logits")


def _ovr_probs(z):
    import torch

    s = torch.sigmoid(z)
    return s / s.sum(dim=1, keepdim=True)


def _fit_by_loss(
    X: np.ndarray,
    P: np.ndarray,
    shapes: dict[str, tuple[int, ...]],
    forward,
    *,
    init: np.ndarray,
    max_iter: int,
) -> tuple[dict[str, np.ndarray], float]:
    """Minimise the cross-entropy between ``forward(X, params)`` and ``P`` with L-BFGS (float64)."""
    import torch
    from scipy.optimize import minimize

    Xt = torch.from_numpy(X.astype(np.float64))
    Pt = torch.from_numpy(P.astype(np.float64))
    sizes = [int(np.prod(s)) for s in shapes.values()]

    def unpack(theta_t):
        out, start = {}, 0
        for (name, shape), size in zip(shapes.items(), sizes, strict=True):
            out[name] = theta_t[start : start + size].reshape(shape)
            start += size
        return out

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        t = torch.from_numpy(theta).requires_grad_(True)
        probs = forward(Xt, unpack(t))
        loss = -(Pt * torch.log(probs.clamp_min(1e-300))).sum(dim=1).mean()
        (g,) = torch.autograd.grad(loss, t)
        return float(loss.detach()), g.numpy().astype(np.float64)

    res = minimize(
        fun,
        init,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "maxfun": 2 * max_iter, "ftol": 1e-15, "gtol": 1e-12},
    )
    params = {k: v.numpy().copy() for k, v in unpack(torch.from_numpy(res.x)).items()}
    entropy = float(-(P * np.log(np.clip(P, 1e-300, None))).sum(axis=1).mean())
    return params, float(res.fun) - entropy  # the mean KL left over


def _fit_linear(
    X: np.ndarray, P: np.ndarray, *, ovr: bool, max_iter: int
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Cross-entropy fit of softmax (or OvR) regression to ``P`` with L-BFGS, analytic gradient."""
    from scipy.optimize import minimize

    n, d = X.shape
    c = P.shape[1]
    A = np.hstack([X, np.ones((n, 1))])

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        Z = A @ theta.reshape(d + 1, c)
        if ovr:
            log_s = -np.logaddexp(0.0, -Z)
            log_S = np.logaddexp.reduce(log_s, axis=1, keepdims=True)
            logq = log_s - log_S
            G = (1.0 - np.exp(log_s)) * (np.exp(logq) - P)
        else:
            logq = Z - np.logaddexp.reduce(Z, axis=1, keepdims=True)
            G = np.exp(logq) - P
        loss = -float((P * logq).sum()) / n
        return loss, (A.T @ G).ravel() / n

    # Start from the log-linear fit of log P: exact for softmax up to a shift, and close for OvR,
    # whose loss is not convex (from zeros L-BFGS stalls in a poor stationary point).
    with np.errstate(divide="ignore"):
        logp = np.log(P)
    ok = np.isfinite(logp).all(axis=1)
    init = np.zeros((d + 1, c))
    if ok.sum() >= d + 1:
        init, *_ = np.linalg.lstsq(A[ok], logp[ok], rcond=None)
    res = minimize(
        fun,
        init.ravel(),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "maxfun": 2 * max_iter, "ftol": 0.0, "gtol": 1e-13},
    )
    theta = res.x.reshape(d + 1, c)
    entropy = float(-(P * np.log(np.clip(P, 1e-300, None))).sum(axis=1).mean())
    return theta[:d], theta[d], float(res.fun) - entropy, int(res.nit)


@EXACT_ATTACKS.register("equation_solving_softmax")
def equation_solving_softmax(
    target: Target,
    *,
    seed: int | np.random.Generator,
    n_queries: int | None = None,
    model: str = "softmax",
    solver: str = "loss",
    domain: Any = None,
    budget: int | None = None,
    max_iter: int = 5000,
) -> ExactResult:
    """Recover multiclass softmax or one-vs-rest logistic regression.

    ``solver="loss"`` (the paper's): minimise cross-entropy over ``n_queries`` random queries,
    default ``c(d + 1)`` (the number of unknowns). ``solver="linear"`` (softmax only): solve
    ``log p_k - log p_0 = (w_k - w_0)·x + (b_k - b_0)`` from ``d + 1`` queries. Softmax weights are
    identifiable only up to a common shift; the recovered ones are reported as given by the solver.
    """

    owner = "equation_solving_softmax"
    _needs_confidences(target, owner)
    model = check_choice(model, name="model", owner=owner, choices=("softmax", "ovr"))
    solver = check_choice(solver, name="solver", owner=owner, choices=("loss", "linear"))
    if solver == "linear" and model != "softmax":
        raise InvalidParameterError(
            f"The 'solver' parameter of {owner} can be 'linear' only with model='softmax' (OvR "
            "probabilities are not log-linear). Got solver='linear', model='ovr' instead."
        )
    max_iter = check_int(max_iter, name="max_iter", owner=owner, low=1)
    c, d = target.n_classes, n_features(target)
    default = d + 1 if solver == "linear" else c * (d + 1)
    n = default if n_queries is None else check_int(n_queries, name="n_queries", owner=owner, low=1)
    if solver == "linear" and n < d + 1:
        raise InvalidParameterError(
            f"The 'n_queries' parameter of {owner} must be an int in [{d + 1}, inf) with "
            f"solver='linear'. Got {n} instead."
        )
    lo, hi = check_domain(domain, d, owner=owner)
    oracle = wrap_budget(target, budget, default=n, owner=owner)
    rng = as_rng(seed)
    x = _uniform_queries(rng, n, lo, hi, tuple(target.input_shape))
    P = oracle.query(x)
    X = x.reshape(n, -1).astype(np.float64)
    info: dict[str, Any] = {"unknowns": c * (d + 1), "solver": solver, "model": model}
    if solver == "linear":
        Z = log_odds(P)
        ok = _finite_rows(Z, owner)
        A = np.hstack([X, np.ones((n, 1))])[ok]
        sol, *_ = np.linalg.lstsq(A, Z[ok], rcond=None)
        W, b = sol[:d], sol[d]
        info["usable_equations"] = int(ok.sum()) * (c - 1)
        return ExactResult(
            name=owner,
            params={"W": W, "b": b},
            model=_linear_model(W, b, target),
            queries=oracle.spent,
            budget=oracle.budget,
            info=info,
        )
    W, b, kl, iters = _fit_linear(X, P, ovr=model == "ovr", max_iter=max_iter)
    info["residual_kl"] = kl
    info["iterations"] = iters
    if model == "softmax":
        recovered = _linear_model(W, b, target)
    else:
        shape = tuple(target.input_shape)

        def probs(xq: np.ndarray) -> np.ndarray:
            s = 1.0 / (1.0 + np.exp(-(xq.reshape(len(xq), -1).astype(np.float64) @ W + b)))
            return s / s.sum(axis=1, keepdims=True)

        recovered = FunctionTarget(probs, n_classes=c, input_shape=shape)
    return ExactResult(
        name=owner,
        params={"W": W, "b": b},
        model=recovered,
        queries=oracle.spent,
        budget=oracle.budget,
        info=info,
    )


@EXACT_ATTACKS.register("equation_solving_mlp")
def equation_solving_mlp(
    target: Target,
    *,
    seed: int | np.random.Generator,
    hidden: int = 20,
    n_queries: int | None = None,
    alpha: float = 1.0,
    domain: Any = None,
    budget: int | None = None,
    max_iter: int = 3000,
) -> ExactResult:
    """Recover a one-hidden-layer MLP by loss minimisation.

    Fits a one-hidden-layer MLP with ``hidden`` tanh units (the paper's architecture) by
    minimising cross-entropy over ``n_queries`` random queries, default ``alpha`` times the number
    of unknowns ``k = hidden (d + 1) + c (hidden + 1)``. The problem is non-convex: the result is a
    functionally close model, not the target's weights.
    """
    import torch

    owner = "equation_solving_mlp"
    _needs_confidences(target, owner)
    hidden = check_int(hidden, name="hidden", owner=owner, low=1)
    max_iter = check_int(max_iter, name="max_iter", owner=owner, low=1)
    c, d = target.n_classes, n_features(target)
    k = hidden * (d + 1) + c * (hidden + 1)
    if not isinstance(alpha, int | float) or not alpha > 0:
        raise InvalidParameterError(
            f"The 'alpha' parameter of {owner} must be a float in (0, inf). Got {alpha!r} instead."
        )
    n = (
        max(1, round(alpha * k))
        if n_queries is None
        else check_int(n_queries, name="n_queries", owner=owner, low=1)
    )
    lo, hi = check_domain(domain, d, owner=owner)
    oracle = wrap_budget(target, budget, default=n, owner=owner)
    rng = as_rng(seed)
    x = _uniform_queries(rng, n, lo, hi, tuple(target.input_shape))
    P = oracle.query(x)
    X = x.reshape(n, -1).astype(np.float64)
    shapes = {"W1": (d, hidden), "b1": (hidden,), "W2": (hidden, c), "b2": (c,)}
    init = np.concatenate(
        [
            rng.normal(0, 1 / np.sqrt(d), d * hidden),
            np.zeros(hidden),
            rng.normal(0, 1 / np.sqrt(hidden), hidden * c),
            np.zeros(c),
        ]
    )

    def forward(Xt, p):
        return torch.softmax(torch.tanh(Xt @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"], dim=1)

    params, kl = _fit_by_loss(X, P, shapes, forward, init=init, max_iter=max_iter)

    def logits(xq: np.ndarray) -> np.ndarray:
        a = np.tanh(xq.reshape(len(xq), -1).astype(np.float64) @ params["W1"] + params["b1"])
        return a @ params["W2"] + params["b2"]

    recovered = FunctionTarget(
        logits, n_classes=c, input_shape=tuple(target.input_shape), output="logits"
    )
    return ExactResult(
        name=owner,
        params=params,
        model=recovered,
        queries=oracle.spent,
        budget=oracle.budget,
        info={"unknowns": k, "residual_kl": kl, "hidden": hidden},
    )
