"""Functionally equivalent extraction of a two-layer ReLU network from its logits.

Jagielski, Carlini, Berthelot, Kurakin, Papernot, "High Accuracy and High Fidelity Extraction of
Neural Networks", USENIX Security 2020, https://arxiv.org/abs/1909.01838 (the method the Adversarial
Robustness Toolbox offers as ``FunctionallyEquivalentExtraction``).

Setting: a binary classifier whose score is ``f(x) = Σ_i a_i ReLU(w_i·x + b_i) + c`` and whose API
returns probabilities from which the logit difference ``f = log p_1 - log p_0`` is read exactly
(value queries only, no gradients).

1. **Critical points.** Along a random line ``x0 + t v`` the restriction ``f(t)`` is piecewise
   linear, with one kink where the line crosses each unit's hyperplane. Every probe asks ``f(t)``
   and ``f(t + δ)`` (a one-sided slope). For an interval ``[lo, hi]`` whose end slopes differ, the
   two end lines intersect at ``t*``; if ``f(t*)`` lies on them, the interval holds exactly one
   kink, at ``t*``; otherwise the interval is split there (or at its middle) and searched again.
   Two more values per kink, on the two linear pieces next to it, refine ``t*`` with long chords.
2. **Weights up to scale, and signs.** Between consecutive kinks the line runs through one linear
   region; forward differences of ``f`` along the d coordinate directions at a point of each region
   give that region's gradient (``d + 1`` values per region). The gradient jump across kink k is
   ``±a_i w_i``; its sign along ``v`` says on which side the unit is on.
3. **Assembly.** Each kink becomes a canonical unit ``s·|Δ|·ReLU(u·(x - p))`` (``u = sΔ/|Δ|``, on
   along ``+v``), equal to the true unit up to an affine function; the leftmost region's gradient
   and value give that affine part, so ``f̂ = f`` everywhere.

Departures: Jagielski et al. take second differences at each critical point (two one-sided
gradients per kink, ``2(d + 1)`` values); we share each region's gradient between its two kinks,
``(h + 1)(d + 1)`` values in all. The search line's radius shrinks until the end values are not
saturated (probabilities 0 or 1 carry no logit); a hyperplane the line crosses beyond the radius is
missed (``info["units_found"]`` says how many were found).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelsteal._checks import as_rng, check_float, check_int
from modelsteal.attacks.exact._base import (
    EXACT_ATTACKS,
    ExactResult,
    log_odds,
    n_features,
    wrap_budget,
)
from modelsteal.attacks.exact.gradients import ReluNetTarget
from modelsteal.errors import InvalidParameterError
from modelsteal.targets import Target, output_kind

_EPS = float(np.finfo(np.float64).eps)


class _Line:
    """Value queries along ``x0 + t v`` through the budgeted oracle."""

    def __init__(self, oracle: Any, x0: np.ndarray, v: np.ndarray, shape: tuple[int, ...]) -> None:
        self.oracle, self.x0, self.v, self.shape = oracle, x0, v, shape

    def values(self, pts: np.ndarray) -> np.ndarray:
        pts = np.asarray(pts, dtype=np.float64).reshape(len(pts), -1)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            return log_odds(self.oracle.query(pts.reshape(len(pts), *self.shape)))[:, 1]

    def at(self, ts: np.ndarray) -> np.ndarray:
        ts = np.asarray(ts, dtype=np.float64)
        return self.x0[None] + ts[:, None] * self.v[None]


@EXACT_ATTACKS.register("relu_from_logits")
def relu_from_logits(
    target: Target,
    *,
    seed: int | np.random.Generator,
    radius: float = 1e3,
    delta: float = 1e-6,
    eta: float = 1e-11,
    step: float = 1e-3,
    n_check: int = 0,
    budget: int | None = None,
) -> ExactResult:
    """Extract a binary two-layer ReLU network from value (logit) queries only.

    ``radius``: the line ``x0 + t v`` (``x0, v ~ N(0, I)``) is searched for ``t`` in
    ``[-radius, radius]`` (halved until the end values are finite). ``delta``: the slope probe's
    step, relative to ``max(1, |t|)``. ``eta``: an interval narrower than
    ``max(eta, 4 delta) · max(1, |t|)`` that still has no single kink is given up (counted in
    ``info["unresolved"]``). ``step``: the
    coordinate step of the finite differences, as a fraction of the distance (in ``t``) from the
    region's point to its nearest kink. ``n_check``: extra value queries on random inputs to report
    the recovered network's relative error (``info["check_rel_err"]``). ``budget`` defaults to
    1,000,000 rows.
    """
    owner = "relu_from_logits"
    if output_kind(target) == "labels":
        raise InvalidParameterError(
            f"{owner} reads logits from returned probabilities, but this target answers labels "
            "only. Use 'lowd_meek' or 'adaptive_retraining' for label-only targets."
        )
    if getattr(target, "n_classes", None) != 2:
        raise InvalidParameterError(
            f"{owner} extracts a binary classifier; this target has "
            f"{getattr(target, 'n_classes', '?')} classes."
        )
    radius = check_float(radius, name="radius", owner=owner, low=0.0, low_open=True)
    delta = check_float(delta, name="delta", owner=owner, low=0.0, low_open=True)
    eta = check_float(eta, name="eta", owner=owner, low=0.0, low_open=True)
    step = check_float(step, name="step", owner=owner, low=0.0, low_open=True, high=0.5)
    n_check = check_int(n_check, name="n_check", owner=owner, low=0)
    d = n_features(target)
    shape = tuple(target.input_shape)
    oracle = wrap_budget(target, budget, default=1_000_000, owner=owner)
    rng = as_rng(seed)
    line = _Line(oracle, rng.normal(size=d), rng.normal(size=d), shape)

    known: dict[float, tuple[float, float]] = {}

    def probe(ts: list[float]) -> None:
        """f(t) and the right slope (f(t + δ_t) − f(t)) / δ_t for every new t, in one batch."""
        ts = [t for t in dict.fromkeys(ts) if t not in known]
        if not ts:
            return
        t = np.asarray(ts)
        dt = delta * np.maximum(1.0, np.abs(t))
        f = line.values(line.at(np.concatenate([t, t + dt])))
        if not np.isfinite(f).all():
            raise InvalidParameterError(
                f"{owner}: a value query along the search line came back saturated (probability "
                "0 or 1), so its logit cannot be read; pass a smaller 'radius'."
            )
        n = len(t)
        for ti, f0, f1, h in zip(ts, f[:n], f[n:], dt, strict=True):
            known[ti] = (float(f0), float((f1 - f0) / h))

    # The largest radius (halving from `radius`) whose end values are not saturated.
    T = radius
    while True:
        ends = line.values(line.at(np.array([-T, T])))
        if np.isfinite(ends).all():
            break
        T /= 2
        if T < 1e-3:
            raise InvalidParameterError(
                f"{owner}: the target's probabilities are saturated (0 or 1) even within 1e-3 of "
                "the starting point, so no logit can be read."
            )
    probe([-T, T])

    kinks: list[tuple[float, float, float]] = []  # (lo, t*, hi), one kink inside each
    pending = [(-T, T)]
    unresolved = 0
    rounds = 0
    while pending:
        plans: list[tuple[float, float, float, bool]] = []
        for lo, hi in pending:
            (flo, slo), (fhi, shi) = known[lo], known[hi]
            chord = (fhi - flo) / (hi - lo)
            scale = max(abs(slo), abs(shi), abs(chord), 1e-300)
            # slope noise: rounding of f over the probe step (f sums terms that grow with |t|),
            # plus 1e-9 relative
            big = max(abs(flo), abs(fhi), 1.0, abs(lo), abs(hi))
            noise = 1e-9 * scale + 64 * _EPS * big / (delta * max(1.0, min(abs(lo), abs(hi))))
            if abs(slo - shi) <= noise and abs(chord - slo) <= noise:
                continue  # linear (a generic f has no kinks whose slope changes cancel)
            if hi - lo <= max(eta, 4 * delta) * max(1.0, abs(lo), abs(hi)):
                unresolved += 1
                continue
            width = hi - lo
            t_star = (
                lo + (fhi - flo - shi * width) / (slo - shi) if abs(slo - shi) > noise else np.nan
            )
            inside = lo + 1e-6 * width < t_star < hi - 1e-6 * width
            plans.append((lo, float(t_star) if inside else 0.5 * (lo + hi), hi, bool(inside)))
        probe([t for _, t, _, _ in plans])
        # A candidate t* holds a single kink when f is on lo's line just left of it and on hi's
        # line just right of it (both lines pass through f(t*) by construction).
        checks = [(lo, t, hi) for lo, t, hi, candidate in plans if candidate]
        side = {}
        if checks:
            r = np.array([1e-4 * (hi - lo) for lo, _, hi in checks])
            tc = np.array([t for _, t, _ in checks])
            fs = line.values(line.at(np.concatenate([tc - r, tc + r])))
            for i, key in enumerate(checks):
                side[key] = (tc[i] - r[i], fs[i], tc[i] + r[i], fs[len(checks) + i])
        rounds += 1
        pending = []
        for lo, t, hi, _ in plans:
            if (lo, t, hi) in side:
                (flo, slo), (fhi, shi) = known[lo], known[hi]
                a, fa, b, fb = side[(lo, t, hi)]
                big = max(abs(flo), abs(fhi), abs(fa), abs(fb), 1.0, abs(lo), abs(hi))
                tol = 64 * _EPS * big * (1.0 + (hi - lo) / (delta * max(1.0, abs(lo), abs(hi))))
                if (
                    abs(fa - (flo + slo * (a - lo))) <= tol
                    and abs(fb - (fhi + shi * (b - hi))) <= tol
                ):
                    kinks.append((lo, t, hi))
                    continue
            pending += [(lo, t), (t, hi)]
    kinks.sort(key=lambda k: k[1])

    # Refine each kink with long chords on the two linear pieces next to it (2 values per kink).
    if kinks:
        lo_a = np.array([k[0] for k in kinks])
        t_a = np.array([k[1] for k in kinks])
        hi_a = np.array([k[2] for k in kinks])
        ql, qr = 0.5 * (lo_a + t_a), 0.5 * (t_a + hi_a)
        fq = line.values(line.at(np.concatenate([ql, qr])))
        fl, fr = fq[: len(kinks)], fq[len(kinks) :]
        flo = np.array([known[k[0]][0] for k in kinks])
        fhi = np.array([known[k[2]][0] for k in kinks])
        s_left = (fl - flo) / (ql - lo_a)
        s_right = (fhi - fr) / (hi_a - qr)
        refined = ql + (fr - fl - s_right * (qr - ql)) / (s_left - s_right)
        ok = np.isfinite(refined) & (refined > ql) & (refined < qr)
        ts = np.where(ok, refined, t_a)
    else:
        ts = np.empty(0)

    # One gradient per linear region along the line, by forward differences (d + 1 values each).
    bounds = np.concatenate([[-T], ts, [T]])
    mids = 0.5 * (bounds[:-1] + bounds[1:])
    half = 0.5 * np.diff(bounds)
    steps = step * half
    pts = line.at(mids)
    rows = np.repeat(pts, d + 1, axis=0).reshape(len(mids), d + 1, d)
    rows[:, 1:, :] += steps[:, None, None] * np.eye(d)[None]
    fv = line.values(rows.reshape(-1, d)).reshape(len(mids), d + 1)
    if not np.isfinite(fv).all():
        raise InvalidParameterError(
            f"{owner}: a value query near the search line came back saturated; pass a smaller "
            "'radius'."
        )
    G = (fv[:, 1:] - fv[:, :1]) / steps[:, None]

    D = np.diff(G, axis=0)  # gradient jump across each kink = ±a_i w_i
    P = line.at(ts)
    s = np.sign(D @ line.v)
    s = np.where(s == 0, 1.0, s)
    norms = np.linalg.norm(D, axis=1)
    U = (s / np.where(norms > 0, norms, 1.0))[:, None] * D  # unit-norm weights, on along +v
    offsets = -np.einsum("ij,ij->i", U, P)
    outer = s * norms
    affine = G[0]  # every canonical unit is off in the leftmost region
    beta = float(fv[0, 0] - pts[0] @ affine)
    params = {"W": U, "b": offsets, "a": outer, "skip": affine, "c": beta}
    model = ReluNetTarget(U.reshape(len(ts), d), offsets, outer, beta, skip=affine)
    info: dict[str, Any] = {
        "units_found": len(ts),
        "unresolved": unresolved,
        "radius": T,
        "search_rounds": rounds,
        "search_queries": oracle.spent - len(mids) * (d + 1),
        "gradient_queries": len(mids) * (d + 1),
    }
    if n_check:
        X = rng.normal(size=(n_check, d)) * 3
        f_true = line.values(X)
        ok = np.isfinite(f_true)
        err = np.abs(model.score(X[ok]) - f_true[ok])
        info["check_rel_err"] = (
            float(err.max() / max(np.abs(f_true[ok]).max(), 1e-300)) if ok.any() else float("nan")
        )
    return ExactResult(
        name=owner,
        params=params,
        model=model,
        queries=oracle.spent,
        budget=oracle.budget,
        info=info,
    )
