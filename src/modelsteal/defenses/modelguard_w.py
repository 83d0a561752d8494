"""ModelGuard-W: the ℓ1-budgeted, argmax-keeping LP of Tang et al. (2024), solved exactly.

Paper: "ModelGuard: Information-Theoretic Defense Against Model Extraction Attacks", USENIX
Security 2024, Section 3.3, Eq. 9 and Appendix A.2
(https://www.usenix.org/conference/usenixsecurity24/presentation/tang). Peer implementation:
``victim/mld.py::MLD`` (one PuLP/CBC linear program per batch).

For each clean row ``y`` (C classes, top class ``t``: the lowest index among ties) the defense
returns the solution ŷ of

    minimise    Σ_k ŷ_k · log(y_k + δ)                        (δ = ``log_floor``, 1e-6)
    subject to  ‖ŷ − y‖₁ ≤ ε,  Σ_k ŷ_k = 1,  ŷ ≥ 0,
                ŷ_t − ŷ_j ≥ m  for every j ≠ t                 (m = ``margin``, 1e-4)

which pushes mass away from the classes the model believes in (it maximises the cross-entropy
−Σ ŷ log y) while keeping the top-1 class and the ℓ1 distance. :func:`solve_modelguard_w_highs`
solves it as the reference does, one LP per row (HiGHS); :func:`solve_modelguard_w` solves it
exactly for a whole batch from its structure:

**Structure.** Costs c_k = log(y_k + δ) grow with y_k, so the top class is the dearest. Fix the
top value T = ŷ_t; every other class is then capped at U = T − m.

1. *Clip.* A class above the cap must come down to it: x⁰ = min(y_j, U). For any ŷ in the box
   [0, U], ‖ŷ − y‖₁ = F(U) + ‖ŷ − x⁰‖₁ with F(U) = Σ_j (y_j − U)⁺ forced.
2. *Transport.* The rest is a budgeted transport inside the box: with R = (1 − T) − Σ x⁰ the mass
   still to add (negative: to remove), add A to the cheapest classes, each up to the cap, and
   take D = A − R from the dearest non-top classes, each down to 0. Moving one more unit from the
   dearest to the cheapest class never hurts until the two fronts meet, so
   A = min(P⁺, ε/2 − (T − y_t)⁺), where P⁺ is what the cost-optimal (cheapest-first) allocation of
   1 − T under the cap would add. (Σ ŷ = Σ y makes the ℓ1 twice the mass that rises.)
3. *The top value.* g(T), the optimum with ŷ_t = T, is convex and piecewise linear in T (partial
   minimisation of an LP). It is finite on [T_lo, T_hi]: T_hi = min(1, y_t + ε/2) and T_lo is
   the larger of (1 + (C − 1)m)/C (the cap must leave room for the mass) and the water level L
   at which lowering the top and every class above L − m to the level (top at L, others at L − m)
   spends ε/2. If T_lo > T_hi no ŷ is feasible (only possible when y itself breaks the margin);
   the row is then returned unchanged and counted in the diagnostics.

So an optimal ŷ has the top at T, the cheapest classes at the cap U, a middle band unchanged (or
clipped to U), the dearest non-top classes at 0, and at most two classes in between. The regimes
follow from where g is smallest: for a small budget at T_lo (the top and the classes that would
break the margin are water-filled down together and the mass goes to the cheapest classes); for
larger budgets inside the interval, where the fill front reaches the cap and dear non-top
classes are drained; and for large budgets the top may even rise above y_t to lift the cap for
the cheapest classes (Appendix A.2's solution at ε = 2: the cheapest classes at the cap, the top
m above it, the rest at 0).

**The search over T.** A convex piecewise-linear function attains its minimum at a kink. Starting
from the bracket [T_lo, T_hi] with the exact one-sided slopes at both ends, we intersect the two
supporting lines at T_x: if g(T_x) equals their common value, T_x is optimal (the two lines
certify it); otherwise T_x lies on a new linear piece and replaces the end on its side. There
are finitely many pieces, so the search ends with the exact optimum (to rounding, ~1e-11 in the
objective); it takes a few steps, rarely more than a dozen (none when the optimum is an end of
the interval, as for most small budgets; bisection steps guard against slow progress).

**Evaluating g(T) and its slope.** Each row is sorted once and keeps the prefix sums of a, of
the costs and of cost · a. On one side of T (right, or left at T_hi) the optimum with ŷ_t = T
has a fixed shape: how many classes are clipped, how many the cost-optimal allocation puts at
the cap, how many are filled to the cap and how many drained to 0, and the one partial class
of each front. These counts come from one comparison per class (values first, their one-sided
derivatives within a tolerance of 1e-12 at ties), and g(T) and its one-sided slope then follow
from a few entries of the prefix sums; the solution itself is built once, at the optimal T.
Every step is vectorised over the rows still unresolved; there is no per-row Python loop.
Small batches, whose cost is the number of numpy calls rather than their size, also try a grid
of top values per step, which leaves fewer steps.

**Small batches, one row at a time.** A numpy call costs about a microsecond whatever its size,
and a step of the vectorised search makes about a hundred: ~0.5 ms for a single row, more than
the LP is worth. Batches of up to ``_ROW_PATH_MAX_ROWS`` rows therefore take a scalar path that
runs the *same* computation with Python floats (so do batches of ``_ROW_PATH_MIN_CLASSES``
classes or more, where its O(log C) counts per step beat the vectorised O(C) ones): the
prefix sums become lists (numpy only sorts and sums rows of ``_ROW_NUMPY_PREP`` classes or
more), the counts of g(T) become ``bisect``
calls and binary searches on those lists, and the solution is written from its structure (the
filled classes, the untouched band, the drained classes) instead of elementwise. Two cheap
certificates shorten its search: the optimum of the problem *without* the ℓ1 budget (the cheapest
classes at the cap, found by a binary search over how many) is the answer whenever it spends
less than the budget; and with more than ``_ROW_TOP_FIRST`` classes the search tries T = y_t
(the top unchanged, where g often has its kink) before the ends. Validation is the one of
:func:`~modelsteal._checks.check_probabilities`, made from the row's sorted values and prefix
sums; rows that need clipping or renormalising take the full check. The answers equal the
batched solver's to rounding (both stop when the supporting lines certify the optimum to 1e-11
in the objective, so where g is flat near its minimum the two may stop a few 1e-12 apart in ŷ),
and both are checked against HiGHS.

Departures from the reference: HiGHS instead of CBC (same LP); the floor δ and the margin are
parameters; rows for which the LP is infeasible are returned unchanged (the reference would
fail), so ``max_l1`` and the argmax still hold for them.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from itertools import accumulate
from operator import mul
from typing import Any

import numpy as np

from modelsteal._checks import check_choice, check_float, check_probabilities
from modelsteal.defenses._base import DEFENSES, Defense
from modelsteal.errors import InvalidParameterError

logger = logging.getLogger(__name__)

SOLVERS = ("exact", "highs")

_TIE = 1e-12  # values this close count as equal when choosing one-sided slopes
_CERTIFY = 1e-11  # objective gap at which the supporting lines certify optimality
_FEASIBLE = 1e-12  # slack on T_lo <= T_hi for rows on the feasibility boundary
_MAX_STEPS = 200  # from step 6 the bracket halves at least every other step: ample
_POINTS_BUDGET = 2048  # entries per evaluation below which a step tries several top values
_MAX_POINTS = 16
_CHUNK = 4096  # rows solved together
_ROW_PATH_MAX_ROWS = 16  # batches up to this many rows are solved one row at a time ...
_ROW_PATH_MIN_CLASSES = 160  # ... and all batches from this many classes (fewer steps per row)
_ROW_NUMPY_PREP = 48  # classes from which the row path sorts and sums with numpy
_ROW_TOP_FIRST = 20  # classes from which the row path tries T = y_t first
_EXACT_SUM = 5e-13  # |Σ y − 1| within which a row is taken as is (check_probabilities: 1e-12)


@dataclass(frozen=True)
class ModelGuardWInfo:
    """Diagnostics of a batch solved by :func:`solve_modelguard_w` or its HiGHS reference.

    ``infeasible``: rows for which no ŷ satisfies the constraints (returned unchanged);
    ``steps``: per row, the number of supporting-line steps of the exact solver (0 for HiGHS).
    """

    infeasible: np.ndarray
    steps: np.ndarray

    @property
    def n_infeasible(self) -> int:
        return int(self.infeasible.sum())


def modelguard_w_objective(
    y: np.ndarray, y_hat: np.ndarray, *, log_floor: float = 1e-6
) -> np.ndarray:
    """The objective of Eq. 9 per row: Σ_k ŷ_k · log(y_k + log_floor)."""
    y = np.asarray(y, dtype=np.float64)
    return np.einsum("ij,ij->i", np.asarray(y_hat, dtype=np.float64), np.log(y + log_floor))


# ---- the exact solver ------------------------------------------------------------------------


def _pl_min(pv: Any, pd: Any, qv: Any, qd: Any) -> tuple[np.ndarray, np.ndarray]:
    """min of two piecewise-linear functions of T, with its one-sided derivative.

    ``pd``/``qd`` are derivatives along each row's direction (+1: right, −1: left); at a tie
    the directional derivative of a minimum is the minimum of the derivatives.
    """
    v = np.minimum(pv, qv)
    d = np.where(pv < qv - _TIE, pd, np.where(qv < pv - _TIE, qd, np.minimum(pd, qd)))
    return v, d


def _pl_pos(v: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """max(v, 0) with its one-sided derivative."""
    d = np.where(v > _TIE, d, np.where(v < -_TIE, 0.0, np.maximum(d, 0.0)))
    return np.maximum(v, 0.0), d


def _exclusive_cumsum(v: np.ndarray, *, reverse: bool = False) -> np.ndarray:
    """Sum of the entries before each one (after it, with ``reverse``), along axis 1."""
    if reverse:
        return np.cumsum(v[:, ::-1], axis=1)[:, ::-1] - v
    return np.cumsum(v, axis=1) - v


@dataclass(frozen=True)
class _Rows:
    """Per-row data of the exact solver: the non-top classes sorted by probability.

    ``a`` and ``sa`` hold the rows still searched (``rid``: their places in the batch); the
    costs and their prefix sums, only ever gathered from, stay whole.
    """

    a: np.ndarray  # (r, n) non-top probabilities, ascending
    sa: np.ndarray  # (r, n + 1) prefix sums: sa[:, j] = Σ_{i<j} a_i
    rid: np.ndarray  # (r,) rows of the batch
    cost: np.ndarray  # (R, n) the costs log(a + δ) of every row of the batch, non-decreasing
    sc: np.ndarray  # (R, n + 1) prefix sums of the costs
    sca: np.ndarray  # (R, n + 1) prefix sums of cost · a
    top: np.ndarray  # (r,) y_t
    top_cost: np.ndarray  # (r,) log(y_t + δ)
    half: np.ndarray  # (r,) ε/2
    margin: float

    @staticmethod
    def build(a: np.ndarray, cost: np.ndarray, top, top_cost, half, margin: float) -> _Rows:
        zero = np.zeros((len(a), 1))
        sa = np.concatenate([zero, np.cumsum(a, axis=1)], axis=1)
        sc = np.concatenate([zero, np.cumsum(cost, axis=1)], axis=1)
        sca = np.concatenate([zero, np.cumsum(cost * a, axis=1)], axis=1)
        return _Rows(a, sa, np.arange(len(a)), cost, sc, sca, top, top_cost, half, margin)

    def take(self, idx: np.ndarray) -> _Rows:
        return _Rows(
            self.a[idx],
            self.sa[idx],
            self.rid[idx],
            self.cost,
            self.sc,
            self.sca,
            self.top[idx],
            self.top_cost[idx],
            self.half[idx],
            self.margin,
        )


def _count(mask: np.ndarray) -> np.ndarray:
    """How many entries of ``mask`` are true along its last axis."""
    return mask.sum(axis=-1)


def _given_top(rows: _Rows, T: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """g(T) and its one-sided derivative along ``s`` (+1 right, −1 left), at k points per row.

    ``T`` and ``s`` have shape (r, k). Steps 1–2 of the module docstring in counts: on the
    side ``s`` of T the optimum with ŷ_t = T has a fixed shape (which classes are clipped, at
    the cap, untouched or drained, and the two fronts), found by comparing values (and, within
    ``_TIE``, their derivatives along ``s``); g and its slope then follow from prefix sums.
    """
    r, n = rows.a.shape
    # Flat offsets of the rows, to gather one entry per row and point.
    at, an = (np.arange(r) * (n + 1))[:, None], (np.arange(r) * n)[:, None]
    ct, cn = (rows.rid * (n + 1))[:, None], (rows.rid * n)[:, None]
    sa, sc, sca = rows.sa.ravel(), rows.sc.ravel(), rows.sca.ravel()
    a, cost = rows.a.ravel(), rows.cost.ravel()
    u = T - rows.margin  # the cap
    mass = 1.0 - T
    # 1. Clip: the first ``rs`` classes stay below the cap on side s (the rest are clipped).
    rs = _count(rows.a[:, None, :] <= (u + s * _TIE)[..., None])
    sa_rs, sc_rs, sca_rs = sa.take(at + rs), sc.take(ct + rs), sca.take(ct + rs)
    sc_n = rows.sc[rows.rid, n:]
    clipped = n - rs
    total = sa_rs + clipped * u  # Σ x⁰
    g = rows.top_cost[:, None] * T + sca_rs + u * (sc_n - sc_rs)
    dg = rows.top_cost[:, None] * s + s * (sc_n - sc_rs)
    need, dneed = mass - total, -s - s * clipped  # R
    over, dover = _pl_pos(T - rows.top[:, None], s)
    budget, dbudget = rows.half[:, None] - over, -dover
    # 2. The cost-optimal allocation of 1 − T under the cap: ``kf`` classes at the cap, then
    #    one partial class; P⁺ is what it adds to x⁰.
    kmax = np.clip(np.floor((mass + _TIE) / u), 0, n).astype(np.intp)
    kf = kmax - ((kmax >= 1) & (mass - kmax * u <= _TIE) & (s > 0))
    kk = np.minimum(kf, rs)
    gain, dgain = kk * u - sa.take(at + kk), s * kk
    jp = np.minimum(kf, n - 1)
    vb, dvb = _pl_pos(mass - kf * u, -s * (1 + kf))
    low = jp < rs
    gp, dgp = _pl_pos(vb - np.minimum(a.take(an + jp), u), dvb - np.where(low, 0.0, s))
    has = kf < n
    gain, dgain = gain + np.where(has, gp, 0.0), dgain + np.where(has, dgp, 0.0)
    add, dadd = _pl_min(gain, dgain, budget, dbudget)  # A
    take, dtake = _pl_pos(add - need, dadd - dneed)  # D = A − R
    # Fill: the first f classes reach the cap (room_j = u − a_j, j < rs), class f gets the rest.
    j1 = np.arange(1, n + 1)
    room_in = j1 * u[..., None] - rows.sa[:, None, 1:]  # room of the j + 1 cheapest
    f = _count((room_in < (add - _TIE)[..., None]) & (j1 <= rs[..., None]))
    f1 = np.minimum(f + 1, n)
    v = add - (f1 * u - sa.take(at + f1))
    f = f + ((f < rs) & (v >= -_TIE) & (dadd - s * f1 >= 0))
    sc_f = sc.take(ct + f)
    g += u * sc_f - sca.take(ct + f)
    dg += s * sc_f
    rem, drem = _pl_pos(add - (f * u - sa.take(at + f)), dadd - s * f)
    c_f = np.where(f < rs, cost.take(cn + np.minimum(f, n - 1)), 0.0)
    g += c_f * rem
    dg += c_f * drem
    # Drain: classes j >= n − q go to 0 (Σ_{i<j} x⁰_i > Σ x⁰ − D), the one before gives the rest.
    # Σ_{i<j} x⁰_i is sa_j for j <= rs and sa_rs + (j − rs) u after.
    j0 = np.arange(n)
    thr = total - take + _TIE
    q = _count(
        np.where(
            j0 <= rs[..., None],
            rows.sa[:, None, :n] > thr[..., None],
            j0 > ((thr - sa_rs) / u + rs)[..., None],
        )
    )
    jd = np.maximum(n - q - 1, 0)
    v = take - total + np.where(jd <= rs, sa.take(at + jd), sa_rs + (jd - rs) * u)
    q = q + ((q < n) & (v >= -_TIE) & (dtake - s * (n - np.maximum(jd, rs)) >= 0))
    qs = n - q
    mq = np.maximum(qs, rs)
    sc_mq = sc.take(ct + mq)
    g -= sca.take(ct + mq) - sca.take(ct + qs) + u * (sc_n - sc_mq)
    dg -= s * (sc_n - sc_mq)
    rem, drem = _pl_pos(
        take - total + np.where(qs <= rs, sa.take(at + qs), sa_rs + (qs - rs) * u),
        dtake - s * (n - mq),
    )
    c_p = np.where(qs >= 1, cost.take(cn + np.maximum(qs - 1, 0)), 0.0)
    g -= c_p * rem
    dg -= c_p * drem
    return g, dg


def _solution(rows: _Rows, T: np.ndarray) -> np.ndarray:
    """The non-top values of the optimum with ŷ_t = T (steps 1–2), sorted like ``rows.a``."""
    a = rows.a
    n = a.shape[1]
    u, mass = (T - rows.margin)[:, None], (1.0 - T)[:, None]
    x0 = np.minimum(a, u)
    need = mass - x0.sum(axis=1, keepdims=True)
    budget = rows.half[:, None] - np.maximum(T - rows.top, 0.0)[:, None]
    best = np.minimum(np.maximum(mass - np.arange(n) * u, 0.0), u)
    add = np.minimum(np.maximum(best - x0, 0.0).sum(axis=1, keepdims=True), budget)
    take = np.maximum(add - need, 0.0)
    room = u - x0
    fill = np.minimum(np.maximum(add - _exclusive_cumsum(room), 0.0), room)
    drain = np.minimum(np.maximum(take - _exclusive_cumsum(x0, reverse=True), 0.0), x0)
    return x0 + fill - drain


def _top_interval(rows: _Rows) -> tuple[np.ndarray, np.ndarray]:
    """[T_lo, T_hi]: the top values for which the rest of the LP is feasible (step 3)."""
    a, m = rows.a, rows.margin
    n = a.shape[1]
    # Water level: the smallest L with (y_t − L)⁺ + Σ_j (a_j + m − L)⁺ <= ε/2.
    levels = np.concatenate([a + m, rows.top[:, None]], axis=1)
    levels = -np.sort(-levels, axis=1)
    count = np.arange(1, n + 2, dtype=np.float64)
    level = (np.cumsum(levels, axis=1) - rows.half[:, None]) / count
    below = np.concatenate([levels[:, 1:], np.full((len(a), 1), -np.inf)], axis=1)
    first = np.argmax(level >= below, axis=1)  # the last column always qualifies
    water = level[np.arange(len(a)), first]
    lo = np.maximum((1.0 + n * m) / (n + 1), water)
    hi = np.minimum(1.0, rows.top + rows.half)
    return lo, hi


def _points_per_row(n_rows: int, n: int) -> int:
    """How many top values to try per row and step: more when the batch is small.

    A step costs ~100 small numpy calls besides a few of size (points × C), so small batches
    try several points at once (the tangent crossing plus a grid over the bracket) and need
    fewer steps.
    """
    return min(max(_POINTS_BUDGET // max(1, n_rows * n), 1), _MAX_POINTS)


def _search_top(rows: _Rows, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The optimal top value per row by the supporting-line search (module docstring).

    Returns the top values and the number of steps per row.
    """
    r, n = rows.a.shape
    best = lo.copy()
    steps = np.zeros(r, dtype=np.int64)
    # Step 0: both ends (right slope at T_lo, left slope at T_hi) and a grid between them.
    k = max(2, _points_per_row(r, n))
    frac = np.linspace(0.0, 1.0, k)
    trial = lo[:, None] + (hi - lo)[:, None] * frac
    trial[:, -1] = hi
    dirs = np.ones((r, k))
    dirs[:, -1] = -1.0
    g, slope = _given_top(rows, trial, dirs)
    slope[:, -1] *= -1.0  # the left slope at T_hi
    # The first point whose slope is >= 0 is optimal if it is T_lo or its slope is 0, or if it
    # is T_hi (its left slope <= 0); else the optimum lies between it and the point before.
    first = np.where(slope >= 0, np.arange(k), k - 1).min(axis=1)
    ids = np.arange(r)
    stop = (first == 0) | (slope[ids, first] == 0) | (first == k - 1) & (slope[:, -1] <= 0)
    stop |= lo >= hi
    best[stop] = trial[ids, first][stop]
    live = np.flatnonzero(~stop)
    f = first[live]
    idx = live
    t_lo, g_lo, s_lo = trial[live, f - 1], g[live, f - 1], slope[live, f - 1]
    t_hi, g_hi, s_hi = trial[live, f], g[live, f], slope[live, f]
    width = t_hi - t_lo
    sub = rows.take(idx)
    for step in range(1, _MAX_STEPS + 1):
        if idx.size == 0:
            break
        m = idx.size
        k = _points_per_row(m, n)
        cross = (g_hi - g_lo + s_lo * t_lo - s_hi * t_hi) / (s_lo - s_hi)
        cross = np.clip(cross, t_lo, t_hi)
        lower = g_lo + s_lo * (cross - t_lo)
        # Guard for one point per step: bisect when two steps have not halved the bracket.
        slow = (k == 1) & (step > 6) & (step % 2 == 0) & (t_hi - t_lo > 0.5 * width)
        trial = np.empty((m, k))
        trial[:, 0] = np.where(slow, 0.5 * (t_lo + t_hi), cross)
        trial[:, 1:] = t_lo[:, None] + (t_hi - t_lo)[:, None] * (np.arange(1, k) / k)
        g, slope = _given_top(sub, trial, np.ones((m, k)))
        steps[idx] = step
        ids = np.arange(m)
        # Certified: the crossing lies on both supporting lines (or a slope is exactly 0).
        at = np.where(slope == 0, np.arange(k), k).min(axis=1)
        certified = ~slow & (g[:, 0] - lower <= _CERTIFY)
        at = np.where(certified, 0, at)
        done = at < k
        collapsed = ~done & (t_hi - t_lo <= 4 * np.spacing(t_hi))
        if done.any():
            best[idx[done]] = trial[ids, np.minimum(at, k - 1)][done]
        if collapsed.any():  # keep the better end
            best[idx[collapsed]] = np.where(g_lo <= g_hi, t_lo, t_hi)[collapsed]
        if step % 2 == 0:
            width = t_hi - t_lo
        # New bracket: the rightmost point with a negative slope, the leftmost with a positive.
        neg = np.where(slope < 0, trial, -np.inf)
        pos = np.where(slope > 0, trial, np.inf)
        j_lo, j_hi = neg.argmax(axis=1), pos.argmin(axis=1)
        up_lo = neg[ids, j_lo] > t_lo
        up_hi = pos[ids, j_hi] < t_hi
        t_lo = np.where(up_lo, trial[ids, j_lo], t_lo)
        g_lo = np.where(up_lo, g[ids, j_lo], g_lo)
        s_lo = np.where(up_lo, slope[ids, j_lo], s_lo)
        t_hi = np.where(up_hi, trial[ids, j_hi], t_hi)
        g_hi = np.where(up_hi, g[ids, j_hi], g_hi)
        s_hi = np.where(up_hi, slope[ids, j_hi], s_hi)
        keep = ~(done | collapsed)
        if not keep.all():
            idx, t_lo, g_lo, s_lo, t_hi, g_hi, s_hi, width = (
                v[keep] for v in (idx, t_lo, g_lo, s_lo, t_hi, g_hi, s_hi, width)
            )
            sub = sub.take(np.flatnonzero(keep))
    if idx.size:  # pragma: no cover - the bracket collapses long before
        raise RuntimeError("solve_modelguard_w: the search over the top value did not converge.")
    return best, steps


# ---- the row path: the same search with Python floats, for small batches ---------------------


def _row_data(row: np.ndarray, floor: float, *, checked: bool) -> tuple | None:
    """One row sorted for the row path, or None if it needs :func:`check_probabilities` first.

    Returns ``(top, t, order, a, sa, cost, sc, sca, top_cost, a_arr)``: the top value and its
    class, the non-top classes in ascending order (stable, as the batched solver sorts them),
    their values ``a``, costs and the prefix sums ``sa``, ``sc`` (of the costs) and ``sca`` (of
    cost · a) as in :class:`_Rows`. ``a`` and ``sa`` are lists (they are bisected); rows of
    ``_ROW_NUMPY_PREP`` classes or more are sorted and summed by numpy, and then keep the costs
    as memoryviews (only a few entries are read) and ``a_arr``, the sorted values as an array.
    """
    c = row.shape[0]
    n = c - 1
    if c < _ROW_NUMPY_PREP:
        values = row.tolist()
        top = max(values)
        t = values.index(top)  # the lowest index among ties, as numpy's argmax
        order: Any = list(range(c))
        del order[t]
        order.sort(key=values.__getitem__)
        a = [values[i] for i in order]
        sa = list(accumulate(a, initial=0.0))
        if not checked and not (a[0] >= 0.0 and abs(sa[n] + top - 1.0) <= _EXACT_SUM):
            return None
        cost: Any = [math.log(v + floor) for v in a]
        sc: Any = list(accumulate(cost, initial=0.0))
        sca: Any = list(accumulate(map(mul, cost, a), initial=0.0))
        return top, t, order, a, sa, cost, sc, sca, math.log(top + floor), None
    t = int(row.argmax())
    order = row.argsort()  # the stable order wherever no two values tie (checked below)
    buf = np.empty((5, c))
    a_arr, cost_arr = buf[3, :n], buf[4, :n]
    if order[-1] == t:  # a unique maximum sorts last: the others are in place
        order = order[:-1]
        row.take(order, out=a_arr)
        tied = bool((a_arr[1:] == a_arr[:-1]).any())
    else:  # the maximum is shared
        tied = True
    if tied:
        key = row.copy()  # sort again, stably (ties in index order), with the top class last
        key[t] = np.inf
        order = key.argsort(kind="stable")[:-1]
        row.take(order, out=a_arr)
    np.log(np.add(a_arr, floor, out=cost_arr), out=cost_arr)
    buf[:3, 0] = 0.0
    np.add.accumulate(a_arr, out=buf[0, 1:])
    np.add.accumulate(cost_arr, out=buf[1, 1:])
    np.add.accumulate(cost_arr * a_arr, out=buf[2, 1:])
    top = float(row[t])
    a, sa = a_arr.tolist(), buf[0].tolist()
    if not checked and not (a[0] >= 0.0 and abs(sa[n] + top - 1.0) <= _EXACT_SUM):
        return None
    cost, sc, sca = memoryview(cost_arr), memoryview(buf[1]), memoryview(buf[2])
    return top, t, order, a, sa, cost, sc, sca, math.log(top + floor), a_arr


def _row_interval(a: list, sa: list, top: float, half: float, m: float) -> tuple[float, float]:
    """[T_lo, T_hi] of one row (as :func:`_top_interval`), by binary search for the water level.

    The levels are the values a_j + m and y_t in descending order; the water level lies on the
    first one that the mean of the levels above it, less ε/2, does not fall below. With
    ``above`` levels a_j + m above y_t, the i largest levels sum to S(i) = Σ of the i (or, past
    ``above``, i − 1) largest a_j, plus their margins, plus y_t once i > ``above``.
    """
    n = len(a)
    above = n - bisect_right(a, top - m)
    total = sa[n]
    lo, hi = 0, n
    while lo < hi:  # the first i whose level (S(i + 1) − ε/2) / (i + 1) >= the next level
        i = (lo + hi) >> 1
        j = i + 1
        if j <= above:
            head = (total - sa[n - j]) + j * m
        else:
            head = (total - sa[n - j + 1]) + i * m + top
        if j < above:
            nxt = a[n - 1 - j] + m
        else:
            nxt = top if j == above else a[n - j] + m
        if (head - half) / j >= nxt:
            hi = i
        else:
            lo = i + 1
    j = lo + 1
    head = (total - sa[n - j]) + j * m if j <= above else (total - sa[n - j + 1]) + lo * m + top
    water = (head - half) / j
    low = (1.0 + n * m) / (n + 1)
    return (water if water > low else low), (top + half if top + half < 1.0 else 1.0)


def _solve_row(
    row: np.ndarray, eps: float, m: float, floor: float, *, checked: bool = False
) -> tuple[Any, bool, int] | None:
    """Solve Eq. 9 for one row with Python floats (module docstring, "Small batches").

    Returns ``(ŷ, infeasible, steps)`` with ŷ a list or an array in the row's class order, or
    None when the row must first go through :func:`check_probabilities` (``checked=False``).
    """
    data = _row_data(row, floor, checked=checked)
    if data is None:
        return None
    top, t, order, a, sa, cost, sc, sca, top_cost, a_arr = data
    n = len(a)
    n1 = n - 1
    half = eps / 2.0
    lo, hi = _row_interval(a, sa, top, half, m)
    if lo > hi + _FEASIBLE:
        return row, True, 0
    lo = min(lo, hi)
    sc_n = sc[n]

    def given_top(  # the row's data as defaults: local variables, the fastest to read
        T: float,
        s: float,
        a: Any = a,
        sa: Any = sa,
        sc: Any = sc,
        sca: Any = sca,
        cost: Any = cost,
        n: int = n,
        n1: int = n1,
        top: float = top,
        top_cost: float = top_cost,
        half: float = half,
        m: float = m,
        sc_n: float = sc_n,
        _TIE: float = _TIE,
        bisect_right: Any = bisect_right,
        floor: Any = math.floor,
    ) -> tuple[float, float]:
        """g(T) and its slope along s: :func:`_given_top` for one row and one point."""
        u = T - m
        mass = 1.0 - T
        # 1. Clip.
        rs = bisect_right(a, u + s * _TIE)
        sa_rs, sc_rs = sa[rs], sc[rs]
        clipped = n - rs
        total = sa_rs + clipped * u
        g = top_cost * T + sca[rs] + u * (sc_n - sc_rs)
        dg = top_cost * s + s * (sc_n - sc_rs)
        need = mass - total
        dneed = -s - s * clipped
        over = T - top
        if over > _TIE:
            budget, dbudget = half - over, -s
        elif over < -_TIE:
            budget, dbudget = half, 0.0
        else:
            budget, dbudget = half - max(over, 0.0), -max(s, 0.0)
        # 2. The cost-optimal allocation: kf classes at the cap, then one partial class.
        kf = floor((mass + _TIE) / u)  # (builtin min/max calls cost more than these ifs)
        if kf > n:
            kf = n
        elif kf >= 1 and s > 0 and mass - kf * u <= _TIE:
            kf -= 1
        kk = kf if kf < rs else rs
        gain = kk * u - sa[kk]
        dgain = s * kk
        if kf < n:
            vb = mass - kf * u
            dvb = -s * (1 + kf)
            if vb < -_TIE:
                vb = dvb = 0.0
            elif vb <= _TIE:
                vb, dvb = max(vb, 0.0), max(dvb, 0.0)
            gp = vb - (a[kf] if a[kf] < u else u)
            dgp = dvb if kf < rs else dvb - s
            if gp > _TIE:
                gain += gp
                dgain += dgp
            elif gp >= -_TIE:
                gain += max(gp, 0.0)
                dgain += max(dgp, 0.0)
        if gain < budget - _TIE:
            add, dadd = gain, dgain
        elif budget < gain - _TIE:
            add, dadd = budget, dbudget
        else:
            add, dadd = min(gain, budget), min(dgain, dbudget)
        take = add - need
        dtake = dadd - dneed
        if take < -_TIE:
            take = dtake = 0.0
        elif take <= _TIE:
            take, dtake = max(take, 0.0), max(dtake, 0.0)
        # Fill: f classes reach the cap (j·u − sa_j grows with j up to rs), class f the rest.
        thr = add - _TIE
        f, hi_f = 0, rs
        while f < hi_f:
            mid = (f + hi_f + 1) >> 1
            if mid * u - sa[mid] < thr:
                f = mid
            else:
                hi_f = mid - 1
        if f < rs and add - ((f + 1) * u - sa[f + 1]) >= -_TIE and dadd - s * (f + 1) >= 0:
            f += 1
        sc_f = sc[f]
        g += u * sc_f - sca[f]
        dg += s * sc_f
        if f < rs:
            rem = add - (f * u - sa[f])
            drem = dadd - s * f
            if rem < -_TIE:
                rem = drem = 0.0
            elif rem <= _TIE:
                rem, drem = max(rem, 0.0), max(drem, 0.0)
            g += cost[f] * rem
            dg += cost[f] * drem
        # Drain: classes j >= n − q go to 0, the one before gives the rest.
        thr = total - take + _TIE
        last = rs if rs < n1 else n1  # up to here Σ_{i<j} x⁰_i is sa_j, nondecreasing: bisect
        q = last + 1 - bisect_right(sa, thr, 0, last + 1)
        if rs < n1:  # after rs it is sa_rs + (j − rs) u
            x = (thr - sa_rs) / u + rs
            if x < rs + 1:
                q += n1 - rs
            elif x < n1:
                q += n1 - floor(x)
        if q < n:
            jd = n1 - q
            v = take - total + (sa[jd] if jd <= rs else sa_rs + (jd - rs) * u)
            if v >= -_TIE and dtake - s * (n - (jd if jd > rs else rs)) >= 0:
                q += 1
        qs = n - q
        mq = qs if qs > rs else rs
        sc_mq = sc[mq]
        g -= sca[mq] - sca[qs] + u * (sc_n - sc_mq)
        dg -= s * (sc_n - sc_mq)
        if qs >= 1:
            rem = take - total + (sa[qs] if qs <= rs else sa_rs + (qs - rs) * u)
            drem = dtake - s * (n - mq)
            if rem < -_TIE:
                rem = drem = 0.0
            elif rem <= _TIE:
                rem, drem = max(rem, 0.0), max(drem, 0.0)
            g -= cost[qs - 1] * rem
            dg -= cost[qs - 1] * drem
        return g, dg

    # Without the budget the optimum puts the k1 cheapest classes at the cap, k1 − 1 the last
    # count whose slope c_t + Σ_{j<k} c_j − (k + 1) c_k is >= 0 (it falls as k grows). If that
    # spends less than the budget, it is the optimum with the budget too (g >= that relaxation).
    k0, k_hi = -1, n1
    while k0 < k_hi:
        mid = (k0 + k_hi + 1) >> 1
        if top_cost + sc[mid] - (mid + 1) * cost[mid] >= 0.0:
            k0 = mid
        else:
            k_hi = mid - 1
    k1 = k0 + 1
    best = (1.0 + k1 * m) / (k1 + 1)
    steps = 0
    if lo <= best <= hi:
        u = best - m
        r = bisect_right(a, u)
        spent = k1 * u - sa[k1] if k1 <= r else r * u - sa[r]
        if spent > half - max(best - top, 0.0) - _TIE:
            best = -1.0
    else:
        best = -1.0
    if best < 0.0:
        best, steps = _row_search(given_top, lo, hi, top if n >= _ROW_TOP_FIRST else -1.0)
    return _row_solution(best, m, half, top, t, order, a, sa, a_arr), False, steps


def _row_search(given_top: Any, lo: float, hi: float, first: float) -> tuple[float, int]:
    """:func:`_search_top` for one row: the supporting-line search, one point per step.

    With ``first`` inside (lo, hi) its two slopes are looked at before the ends: the optimum is
    often there, and it splits the bracket.
    """
    steps = 0
    if lo < first < hi:
        g_y, s_r = given_top(first, 1.0)
        if s_r < 0:
            t_lo, g_lo, s_lo = first, g_y, s_r
            g_hi, s_hi = given_top(hi, -1.0)
            s_hi = -s_hi
            if s_hi <= 0:
                return hi, 1
            t_hi = hi
        else:
            g_y, s_l = given_top(first, -1.0)
            if -s_l <= 0:
                return first, 1
            t_hi, g_hi, s_hi = first, g_y, -s_l
            g_lo, s_lo = given_top(lo, 1.0)
            if s_lo >= 0:
                return lo, 1
            t_lo = lo
    else:
        g_lo, s_lo = given_top(lo, 1.0)
        if lo >= hi or s_lo >= 0:
            return lo, 0
        g_hi, s_hi = given_top(hi, -1.0)
        s_hi = -s_hi
        if s_hi <= 0:
            return hi, 0
        t_lo, t_hi = lo, hi
    width = t_hi - t_lo
    while steps < _MAX_STEPS:
        steps += 1
        cross = (g_hi - g_lo + s_lo * t_lo - s_hi * t_hi) / (s_lo - s_hi)
        cross = t_lo if cross < t_lo else (t_hi if cross > t_hi else cross)
        if steps > 6 and steps % 2 == 0 and t_hi - t_lo > 0.5 * width:  # slow: bisect
            T = 0.5 * (t_lo + t_hi)
            g, slope = given_top(T, 1.0)
            if slope == 0:
                return T, steps
        else:
            T = cross
            g, slope = given_top(T, 1.0)
            if slope == 0 or g - (g_lo + s_lo * (cross - t_lo)) <= _CERTIFY:
                return T, steps
        if t_hi - t_lo <= 4 * math.ulp(t_hi):
            return (t_lo if g_lo <= g_hi else t_hi), steps
        if steps % 2 == 0:
            width = t_hi - t_lo
        if slope < 0 and T > t_lo:
            t_lo, g_lo, s_lo = T, g, slope
        elif slope > 0 and T < t_hi:
            t_hi, g_hi, s_hi = T, g, slope
    raise RuntimeError(  # pragma: no cover - the bracket collapses long before
        "solve_modelguard_w: the search over the top value did not converge."
    )


def _row_solution(
    T: float, m: float, half: float, top: float, t: int, order: Any, a: list, sa: list, a_arr: Any
) -> Any:
    """:func:`_solution` for one row, written from its structure: the first f classes at the
    cap, class f partly filled, a band untouched (clipped to the cap above r), class qs − 1
    partly drained and the classes from qs on at 0; classes touched by both the fill and the
    drain (only where they meet, with amounts at rounding level) get the elementwise formula.
    Returns the row in class order, a list (or an array for rows prepared with numpy)."""
    n = len(a)
    u = T - m
    mass = 1.0 - T
    r = bisect_right(a, u)  # a_j <= u keep their value, the others are clipped to u
    sa_r = sa[r]
    total = sa_r + (n - r) * u
    # P⁺, what the cost-optimal allocation of 1 − T under the cap adds, caps the fill.
    k = math.floor(mass / u)
    if k > n:
        k = n
    kk = k if k < r else r
    gain = kk * u - sa[kk]
    if k < n:
        b = mass - k * u
        if b > u:
            b = u
        b -= a[k] if k < r else u
        if b > 0.0:
            gain += b
    over = T - top
    add = half - over if over > 0.0 else half
    if gain < add:
        add = gain
    take = add - (mass - total)
    if take < 0.0:
        take = 0.0
    f, hi_f = 0, r  # the classes filled to the cap: E_f = f·u − sa_f <= add
    while f < hi_f:
        mid = (f + hi_f + 1) >> 1
        if mid * u - sa[mid] <= add:
            f = mid
        else:
            hi_f = mid - 1
    thr = total - take  # the drained classes: Σ_{i<j} x⁰_i >= Σ x⁰ − D
    if thr <= sa_r:
        qs = bisect_left(sa, thr, 0, r + 1)
    else:
        qs = r + math.ceil((thr - sa_r) / u)
        if qs > n:
            qs = n
    if a_arr is None:
        x: Any = a[:r]
        x += [u] * (n - r)
        x[:f] = [u] * f
    else:
        x = np.minimum(a_arr, u)
        x[:f] = u
    if f < r:
        x[f] = a[f] + (add - (f * u - sa[f]))
    x[qs:] = [0.0] * (n - qs) if a_arr is None else 0.0
    if qs:
        pre = sa[qs] if qs <= r else sa_r + (qs - r) * u
        x[qs - 1] = (a[qs - 1] if qs - 1 < r else u) - (take - (total - pre))
    for j in range(qs - 1 if qs else 0, f + 1 if f < r else f):  # touched by both
        x0 = a[j] if j < r else u
        fill = add - (j * u - sa[j] if j <= r else r * u - sa_r)
        fill = 0.0 if fill < 0.0 else (u - x0 if fill > u - x0 else fill)
        pre = sa[j + 1] if j + 1 <= r else sa_r + (j + 1 - r) * u
        drain = take - (total - pre)
        drain = 0.0 if drain < 0.0 else (x0 if drain > x0 else drain)
        x[j] = x0 + fill - drain
    if a_arr is None:
        out = [0.0] * (n + 1)
        for i, v in zip(order, x, strict=True):
            if v > 0.0:
                out[i] = v
        out[t] = T
        return out
    out_arr = np.empty(n + 1)
    np.maximum(x, 0.0, out=x)
    out_arr[order] = x
    out_arr[t] = T
    return out_arr


def _check_inputs(
    y: Any, epsilon: Any, margin: Any, log_floor: Any, owner: str
) -> tuple[np.ndarray, np.ndarray, float, float]:
    y = check_probabilities(y, where=f"{owner}(y)")
    m = check_float(margin, name="margin", owner=owner, low=0.0, high=1.0, high_open=True)
    floor = check_float(log_floor, name="log_floor", owner=owner, low=0.0, low_open=True)
    eps = np.asarray(epsilon, dtype=np.float64)
    if eps.ndim == 0:
        eps = np.full(len(y), float(check_float(epsilon, name="epsilon", owner=owner, low=0.0)))
    elif eps.shape != (len(y),) or not np.all(np.isfinite(eps)) or np.any(eps < 0):
        raise InvalidParameterError(
            f"The 'epsilon' parameter of {owner} must be a float in [0, inf) or one per row "
            f"(shape ({len(y)},)). Got an array of shape {eps.shape} instead."
        )
    return y, eps, m, floor


def _solve_rows(
    y: np.ndarray, eps: list[float], m: float, floor: float, *, checked: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The row path over a small batch; None if a row needs the full check (``checked=False``)."""
    rows, infeasible, steps = [], [], []
    for i, e in enumerate(eps):
        solved = _solve_row(y[i], e, m, floor, checked=checked)
        if solved is None:
            return None
        rows.append(solved[0])
        infeasible.append(solved[1])
        steps.append(solved[2])
    return (
        np.array(rows, dtype=np.float64),
        np.array(infeasible, dtype=bool),
        np.array(steps, dtype=np.int64),
    )


def _solve_small(
    y: Any, epsilon: Any, margin: Any, log_floor: Any, *, return_info: bool
) -> tuple[np.ndarray, ModelGuardWInfo | None] | None:
    """The row path with validation done cheaply, or None where the general checks must run.

    Takes float64 batches of 1 to ``_ROW_PATH_MAX_ROWS`` rows and plain float parameters in
    range; rows are checked as :func:`check_probabilities` would (by :func:`_row_data`), and
    anything else (other types, bad values, rows to renormalise) goes the general way, which
    validates, raises its errors and renormalises.
    """
    if not (
        type(y) is np.ndarray
        and y.ndim == 2
        and y.dtype == np.float64
        and 0 < y.shape[0]
        and (y.shape[0] <= _ROW_PATH_MAX_ROWS or y.shape[1] >= _ROW_PATH_MIN_CLASSES)
        and y.shape[1] > 1
        and isinstance(margin, float)
        and 0.0 <= margin < 1.0
        and isinstance(log_floor, float)
        and 0.0 < log_floor < math.inf
    ):
        return None
    n_rows = y.shape[0]
    if isinstance(epsilon, float):
        eps = [float(epsilon)] * n_rows
    elif type(epsilon) is np.ndarray and epsilon.shape == (n_rows,):
        eps = epsilon.tolist()
    else:
        return None
    for e in eps:
        if not (isinstance(e, float) and 0.0 <= e < math.inf):
            return None
    if n_rows == 1:  # the common case, without the batch's lists
        solved = _solve_row(y[0], eps[0], float(margin), float(log_floor))
        if solved is None:
            return None
        row, infeasible, steps = solved
        if type(row) is list:
            out = np.fromiter(row, np.float64, len(row)).reshape(1, -1)
        else:  # an array: a solution, or the input row itself when it was infeasible
            out = row.reshape(1, -1).copy() if infeasible else row.reshape(1, -1)
        if not return_info:
            return out, None
        info = ModelGuardWInfo(infeasible=np.array([infeasible]), steps=np.array([steps]))
        return out, info
    solved_rows = _solve_rows(y, eps, float(margin), float(log_floor), checked=False)
    if solved_rows is None:
        return None
    out, infeasible_rows, step_rows = solved_rows
    return out, ModelGuardWInfo(infeasible=infeasible_rows, steps=step_rows)


def solve_modelguard_w(
    y: np.ndarray,
    epsilon: float | np.ndarray,
    *,
    margin: float = 1e-4,
    log_floor: float = 1e-6,
    return_info: bool = False,
) -> np.ndarray | tuple[np.ndarray, ModelGuardWInfo]:
    """Solve Eq. 9 exactly for every row of ``y`` (shape (n, C)); see the module docstring.

    ``epsilon`` is the ℓ1 budget, one float or one per row. Rows for which the LP is infeasible
    (``y`` breaks the margin by more than the budget can repair) are returned unchanged; with
    ``return_info=True`` the call also returns a :class:`ModelGuardWInfo` that counts them.
    """
    small = _solve_small(y, epsilon, margin, log_floor, return_info=return_info)
    if small is not None:
        return small if return_info else small[0]
    y, eps, m, floor = _check_inputs(y, epsilon, margin, log_floor, "solve_modelguard_w")
    n_rows, c = y.shape
    out = y.copy()
    infeasible = np.zeros(n_rows, dtype=bool)
    steps = np.zeros(n_rows, dtype=np.int64)
    if c > 1 and (0 < n_rows <= _ROW_PATH_MAX_ROWS or c >= _ROW_PATH_MIN_CLASSES):
        out, infeasible, steps = _solve_rows(y, eps.tolist(), m, floor, checked=True)
    elif n_rows > _CHUNK:  # bound the memory of the (rows, C) temporaries
        for i in range(0, n_rows, _CHUNK):
            part = slice(i, i + _CHUNK)
            out[part], info = solve_modelguard_w(
                y[part], eps[part], margin=m, log_floor=floor, return_info=True
            )
            infeasible[part], steps[part] = info.infeasible, info.steps
    elif c > 1 and n_rows:
        ids = np.arange(n_rows)
        top = np.argmax(y, axis=1)  # numpy's rule: the lowest index among ties
        key = y.copy()
        key[ids, top] = np.inf
        order = np.argsort(key, axis=1, kind="stable")[:, :-1]  # non-top classes, ascending
        a = np.take_along_axis(y, order, axis=1)
        rows = _Rows.build(
            a, np.log(a + floor), y[ids, top], np.log(y[ids, top] + floor), eps / 2.0, m
        )
        lo, hi = _top_interval(rows)
        infeasible = lo > hi + _FEASIBLE
        ok = np.flatnonzero(~infeasible)
        if ok.size:
            rows = rows.take(ok)
            t_best, steps[ok] = _search_top(rows, np.minimum(lo[ok], hi[ok]), hi[ok])
            x = _solution(rows, t_best)
            solved = np.empty((ok.size, c))
            np.put_along_axis(solved, order[ok], np.maximum(x, 0.0), axis=1)
            solved[np.arange(ok.size), top[ok]] = t_best
            out[ok] = solved
    if return_info:
        return out, ModelGuardWInfo(infeasible=infeasible, steps=steps)
    return out


# ---- the reference: one HiGHS linear program per row ----------------------------------------


def solve_modelguard_w_highs(
    y: np.ndarray,
    epsilon: float | np.ndarray,
    *,
    margin: float = 1e-4,
    log_floor: float = 1e-6,
    return_info: bool = False,
    feasibility_tolerance: float = 1e-10,
) -> np.ndarray | tuple[np.ndarray, ModelGuardWInfo]:
    """Solve Eq. 9 as the reference does: one LP per row, here with ``scipy``'s HiGHS.

    Variables ŷ and z (both ≥ 0) with z ≥ ŷ − y, z ≥ y − ŷ, Σ z ≤ ε, Σ ŷ = 1 and
    ŷ_j − ŷ_t ≤ −margin for j ≠ t. With HiGHS' default feasibility tolerance (1e-7) the
    answers exceed the ℓ1 budget by up to a few 1e-7 (the C constraints on z each leak a
    little), worth up to ~2e-8 in the objective; so the reference asks for
    ``feasibility_tolerance`` (primal and dual) instead. HiGHS may call ε = 0 infeasible even
    when ŷ = y is feasible (a single feasible point); the exact solver returns y there.
    Infeasible rows are returned unchanged, as by :func:`solve_modelguard_w`.
    """
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix

    y, eps, m, floor = _check_inputs(y, epsilon, margin, log_floor, "solve_modelguard_w_highs")
    tol = check_float(
        feasibility_tolerance,
        name="feasibility_tolerance",
        owner="solve_modelguard_w_highs",
        low=0.0,
        low_open=True,
    )
    n_rows, c = y.shape
    out = y.copy()
    infeasible = np.zeros(n_rows, dtype=bool)
    if c > 1:
        # Rows 0..C-1: ŷ − z <= y; C..2C-1: −ŷ − z <= −y; 2C: Σ z <= ε; then one row per j != t.
        diag = np.arange(c)
        base_r = np.concatenate([diag, diag, c + diag, c + diag, np.full(c, 2 * c)])
        base_c = np.concatenate([diag, c + diag, diag, c + diag, c + diag])
        base_v = np.concatenate([np.ones(c), -np.ones(c), -np.ones(c), -np.ones(c), np.ones(c)])
        a_eq = np.concatenate([np.ones(c), np.zeros(c)])[None, :]
        options = {"primal_feasibility_tolerance": tol, "dual_feasibility_tolerance": tol}
        for i in range(n_rows):
            t = int(np.argmax(y[i]))
            others = np.delete(diag, t)
            margin_r = 2 * c + 1 + np.arange(c - 1)
            a_ub = coo_matrix(
                (
                    np.concatenate([base_v, np.ones(c - 1), -np.ones(c - 1)]),
                    (
                        np.concatenate([base_r, margin_r, margin_r]),
                        np.concatenate([base_c, others, np.full(c - 1, t)]),
                    ),
                ),
                shape=(3 * c, 2 * c),
            ).tocsr()
            b_ub = np.concatenate([y[i], -y[i], [eps[i]], np.full(c - 1, -m)])
            cost = np.concatenate([np.log(y[i] + floor), np.zeros(c)])
            res = linprog(
                cost,
                A_ub=a_ub,
                b_ub=b_ub,
                A_eq=a_eq,
                b_eq=[1.0],
                bounds=(0, None),
                method="highs",
                options=options,
            )
            if res.status == 2:
                infeasible[i] = True
            elif res.status != 0:
                raise RuntimeError(f"HiGHS failed on row {i}: {res.message}")
            else:
                out[i] = np.maximum(res.x[:c], 0.0)
    if return_info:
        return out, ModelGuardWInfo(infeasible=infeasible, steps=np.zeros(n_rows, np.int64))
    return out


# ---- the defense ------------------------------------------------------------------------------


@DEFENSES.register("modelguard_w")
class ModelGuardW(Defense):
    """ModelGuard-W (Tang et al., USENIX Security 2024): maximise −Σ ŷ log y within ℓ1 ε.

    Each row is answered with the solution of Eq. 9 (see the module docstring): the ŷ on the
    simplex, within ℓ1 distance ε of the clean row and with the same top-1 class (by ``margin``),
    that puts as little mass as possible on the classes the model believes in.

    Parameters
    ----------
    epsilon:
        ℓ1 budget per row, in (0, 2] (the reference's default is 1.0).
    margin:
        ŷ_t − ŷ_j ≥ margin for every j ≠ t, in [0, 1) (1e-4 as the reference). With 0 the top
        class may tie with another, and numpy's argmax would then pick the lower index.
    log_floor:
        δ in log(y + δ), > 0 (1e-6 as the reference): classes with y = 0 get a finite cost.
    solver:
        ``"exact"`` (the batched structural solver) or ``"highs"`` (one LP per row, the
        reference formulation; slow, for checking).

    A row whose clean answer breaks the margin by more than ε can repair (two classes tied at
    the top with ε < margin, say) has no feasible ŷ; it is returned unchanged, and a warning says
    how many rows of the batch were.
    """

    name = "modelguard_w"
    preserves_argmax = True

    def __init__(
        self,
        *,
        epsilon: float = 1.0,
        margin: float = 1e-4,
        log_floor: float = 1e-6,
        solver: str = "exact",
    ) -> None:
        owner = "ModelGuardW"
        self.epsilon = check_float(
            epsilon, name="epsilon", owner=owner, low=0.0, high=2.0, low_open=True
        )
        self.margin = check_float(
            margin, name="margin", owner=owner, low=0.0, high=1.0, high_open=True
        )
        self.log_floor = check_float(
            log_floor, name="log_floor", owner=owner, low=0.0, low_open=True
        )
        self.solver = check_choice(solver, name="solver", owner=owner, choices=SOLVERS)

    @property
    def max_l1(self) -> float:
        return self.epsilon

    def _perturb(self, y: np.ndarray, x: np.ndarray | None) -> np.ndarray:
        solve = solve_modelguard_w if self.solver == "exact" else solve_modelguard_w_highs
        out, info = solve(
            y, self.epsilon, margin=self.margin, log_floor=self.log_floor, return_info=True
        )
        if info.n_infeasible:
            logger.warning(
                "ModelGuardW: %d of %d rows break the margin by more than epsilon can repair; "
                "they are returned unchanged.",
                info.n_infeasible,
                len(y),
            )
        return out
