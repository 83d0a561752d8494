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
of each front. These counts are binary searches on the sorted values and prefix sums (values
first, their one-sided derivatives within a tolerance of 1e-12 at ties), and g(T) and its
one-sided slope then follow from a few entries of the prefix sums: O(log C) per evaluation.
The solution itself is built once, at the optimal T, from its structure (the filled classes,
the untouched band, the drained classes). Two cheap certificates shorten the search: the
optimum of the problem *without* the ℓ1 budget (the cheapest classes at the cap, found by a
binary search over how many) is the answer whenever it spends less than the budget; and with
``_TOP_FIRST`` or more non-top classes the search tries T = y_t (the top unchanged, where g
often has its kink) before the ends.

**Compiled, one row at a time.** The search is scalar work — a few binary searches per step,
a handful of steps per row — so it is compiled (numba) and runs row after row (at batch 256,
0.7 µs a row at 10 classes and 13 µs at 256: ``python benchmarks/modelguard_w.py``). Rows
are validated as :func:`~modelsteal._checks.check_probabilities` would (non-negative, summing
to 1 within rounding) on the way in; batches that need converting, clipping or renormalising
take the full check first. Tests and ``benchmarks/modelguard_w.py`` check it against HiGHS.

Departures from the reference: HiGHS instead of CBC (same LP); the floor δ and the margin are
parameters; rows for which the LP is infeasible are returned unchanged (the reference would
fail), so ``max_l1`` and the argmax still hold for them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelsteal._checks import FAST_EXACT_SUM, check_choice, check_float, check_probabilities
from modelsteal._jit import jit
from modelsteal.defenses._base import DEFENSES, Defense
from modelsteal.errors import InvalidParameterError

logger = logging.getLogger(__name__)

SOLVERS = ("exact", "highs")

_TIE = 1e-12  # values this close count as equal when choosing one-sided slopes
_CERTIFY = 1e-11  # objective gap at which the supporting lines certify optimality
_FEASIBLE = 1e-12  # slack on T_lo <= T_hi for rows on the feasibility boundary
_MAX_STEPS = 200  # from step 6 the bracket halves at least every other step: ample
_TOP_FIRST = 20  # non-top classes (C − 1) from which the search tries T = y_t first
_EXACT_SUM = FAST_EXACT_SUM  # a row taken as is by the compiled path


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


# ---- the compiled row solver -----------------------------------------------------------------


@jit(nogil=True)
def _row_prepare(row, floor):  # pragma: no cover - compiled
    """The top value and class, the non-top classes in ascending order (stable), their values,
    costs log(a + δ) and the prefix sums of a, of the costs and of cost · a."""
    c = row.shape[0]
    n = c - 1
    t = 0
    for k in range(1, c):  # the lowest index among ties, as numpy's argmax
        if row[k] > row[t]:
            t = k
    key = row.copy()
    key[t] = np.inf
    order = np.argsort(key, kind="mergesort")[:n]
    a = np.empty(n)
    cost = np.empty(n)
    sa = np.empty(n + 1)
    sc = np.empty(n + 1)
    sca = np.empty(n + 1)
    sa[0] = sc[0] = sca[0] = 0.0
    for j in range(n):
        v = row[order[j]]
        a[j] = v
        cost[j] = math.log(v + floor)
        sa[j + 1] = sa[j] + v
        sc[j + 1] = sc[j] + cost[j]
        sca[j + 1] = sca[j] + cost[j] * v
    return row[t], t, order, a, cost, sa, sc, sca


@jit(nogil=True)
def _row_interval(a, sa, top, half, m):  # pragma: no cover - compiled
    """[T_lo, T_hi] of one row, by binary search for the water level.

    The levels are the values a_j + m and y_t in descending order; the water level lies on the
    first one that the mean of the levels above it, less ε/2, does not fall below. With
    ``above`` levels a_j + m above y_t, the i largest levels sum to S(i) = Σ of the i (or, past
    ``above``, i − 1) largest a_j, plus their margins, plus y_t once i > ``above``.
    """
    n = a.shape[0]
    above = n - np.searchsorted(a, top - m, side="right")
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
        elif j == above:
            nxt = top
        else:
            nxt = a[n - j] + m
        if (head - half) / j >= nxt:
            hi = i
        else:
            lo = i + 1
    j = lo + 1
    if j <= above:
        head = (total - sa[n - j]) + j * m
    else:
        head = (total - sa[n - j + 1]) + lo * m + top
    water = (head - half) / j
    low = (1.0 + n * m) / (n + 1)
    return max(water, low), min(top + half, 1.0)


@jit(nogil=True, inline="always")
def _pos(v, dv):  # pragma: no cover - compiled
    """max(v, 0) with its one-sided derivative (values within _TIE of 0 count as 0)."""
    if v < -_TIE:
        return 0.0, 0.0
    if v <= _TIE:
        return max(v, 0.0), max(dv, 0.0)
    return v, dv


@jit(nogil=True)
def _given_top(T, s, a, sa, sc, sca, cost, top, top_cost, half, m):  # pragma: no cover
    """g(T), the optimum with ŷ_t = T, and its one-sided slope along s (+1 right, −1 left).

    Steps 1–2 of the module docstring in counts: on the side s of T the optimum has a fixed
    shape (which classes are clipped, at the cap, untouched or drained, and the two fronts),
    found by binary searches on the sorted values (within ``_TIE``, by their derivatives along
    s); g and its slope then follow from a few entries of the prefix sums.
    """
    n = a.shape[0]
    n1 = n - 1
    sc_n = sc[n]
    u = T - m
    mass = 1.0 - T
    # 1. Clip.
    rs = np.searchsorted(a, u + s * _TIE, side="right")
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
    kf = math.floor((mass + _TIE) / u)
    if kf > n:
        kf = n
    elif kf >= 1 and s > 0 and mass - kf * u <= _TIE:
        kf -= 1
    kk = kf if kf < rs else rs
    gain = kk * u - sa[kk]
    dgain = s * kk
    if kf < n:
        vb, dvb = _pos(mass - kf * u, -s * (1 + kf))
        gp = vb - (a[kf] if a[kf] < u else u)
        dgp = dvb if kf < rs else dvb - s
        gp, dgp = _pos(gp, dgp)
        gain += gp
        dgain += dgp
    if gain < budget - _TIE:
        add, dadd = gain, dgain
    elif budget < gain - _TIE:
        add, dadd = budget, dbudget
    else:
        add, dadd = min(gain, budget), min(dgain, dbudget)
    take, dtake = _pos(add - need, dadd - dneed)
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
        rem, drem = _pos(add - (f * u - sa[f]), dadd - s * f)
        g += cost[f] * rem
        dg += cost[f] * drem
    # Drain: classes j >= n − q go to 0, the one before gives the rest.
    thr = total - take + _TIE
    last = rs if rs < n1 else n1  # up to here Σ_{i<j} x⁰_i is sa_j, nondecreasing: bisect
    q = last + 1 - np.searchsorted(sa[: last + 1], thr, side="right")
    if rs < n1:  # after rs it is sa_rs + (j − rs) u
        x = (thr - sa_rs) / u + rs
        if x < rs + 1:
            q += n1 - rs
        elif x < n1:
            q += n1 - math.floor(x)
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
        rem, drem = _pos(
            take - total + (sa[qs] if qs <= rs else sa_rs + (qs - rs) * u), dtake - s * (n - mq)
        )
        g -= cost[qs - 1] * rem
        dg -= cost[qs - 1] * drem
    return g, dg


@jit(nogil=True)
def _row_search(lo, hi, first, a, sa, sc, sca, cost, top, top_cost, half, m):  # pragma: no cover
    """The supporting-line search over T for one row (module docstring); returns (T, steps),
    or (nan, -1) if it ran out of steps (the caller then raises).

    With ``first`` inside (lo, hi) its two slopes are looked at before the ends: the optimum is
    often there, and it splits the bracket.
    """
    steps = 0
    if lo < first < hi:
        g_y, s_r = _given_top(first, 1.0, a, sa, sc, sca, cost, top, top_cost, half, m)
        if s_r < 0:
            t_lo, g_lo, s_lo = first, g_y, s_r
            g_hi, s_hi = _given_top(hi, -1.0, a, sa, sc, sca, cost, top, top_cost, half, m)
            s_hi = -s_hi
            if s_hi <= 0:
                return hi, 1
            t_hi = hi
        else:
            g_y, s_l = _given_top(first, -1.0, a, sa, sc, sca, cost, top, top_cost, half, m)
            if -s_l <= 0:
                return first, 1
            t_hi, g_hi, s_hi = first, g_y, -s_l
            g_lo, s_lo = _given_top(lo, 1.0, a, sa, sc, sca, cost, top, top_cost, half, m)
            if s_lo >= 0:
                return lo, 1
            t_lo = lo
    else:
        g_lo, s_lo = _given_top(lo, 1.0, a, sa, sc, sca, cost, top, top_cost, half, m)
        if lo >= hi or s_lo >= 0:
            return lo, 0
        g_hi, s_hi = _given_top(hi, -1.0, a, sa, sc, sca, cost, top, top_cost, half, m)
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
            g, slope = _given_top(T, 1.0, a, sa, sc, sca, cost, top, top_cost, half, m)
            if slope == 0:
                return T, steps
        else:
            T = cross
            g, slope = _given_top(T, 1.0, a, sa, sc, sca, cost, top, top_cost, half, m)
            if slope == 0 or g - (g_lo + s_lo * (cross - t_lo)) <= _CERTIFY:
                return T, steps
        if t_hi - t_lo <= 4 * np.spacing(t_hi):
            return (t_lo if g_lo <= g_hi else t_hi), steps
        if steps % 2 == 0:
            width = t_hi - t_lo
        if slope < 0 and T > t_lo:
            t_lo, g_lo, s_lo = T, g, slope
        elif slope > 0 and T < t_hi:
            t_hi, g_hi, s_hi = T, g, slope
    return np.nan, -1  # never reached (the bracket collapses long before): reported as -1


@jit(nogil=True)
def _row_solution(T, m, half, top, a, sa, out, order, t):  # pragma: no cover - compiled
    """Write into ``out`` the optimum with ŷ_t = T, from its structure: the first f classes at
    the cap, class f partly filled, a band untouched (clipped to the cap above r), class
    qs − 1 partly drained and the classes from qs on at 0; classes touched by both the fill and
    the drain (only where they meet, with amounts at rounding level) get the elementwise
    formula."""
    n = a.shape[0]
    u = T - m
    mass = 1.0 - T
    r = np.searchsorted(a, u, side="right")  # a_j <= u keep their value, the others are clipped
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
        qs = np.searchsorted(sa[: r + 1], thr, side="left")
    else:
        qs = r + math.ceil((thr - sa_r) / u)
        if qs > n:
            qs = n
    x = np.empty(n)
    for j in range(n):
        x[j] = u if (j < f or j >= r) else a[j]
    if f < r:
        x[f] = a[f] + (add - (f * u - sa[f]))
    for j in range(qs, n):
        x[j] = 0.0
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
    for j in range(n):
        out[order[j]] = x[j] if x[j] > 0.0 else 0.0
    out[t] = T


@jit(nogil=True)
def _solve_rows(y, eps, m, floor, checked, out, infeasible, steps):  # pragma: no cover
    """Solve Eq. 9 for every row of ``y`` into ``out``; returns the index of the first row that
    must first go through :func:`check_probabilities` (``checked=False``: negative entries or a
    sum off 1), or -1 when all were solved."""
    for i in range(y.shape[0]):
        row = y[i]
        if not checked:  # as check_probabilities would take it (NaN fails every comparison)
            total = 0.0
            for v in row:
                if not v >= 0.0:
                    return i
                total += v
            if not abs(total - 1.0) <= _EXACT_SUM:
                return i
        top, t, order, a, cost, sa, sc, sca = _row_prepare(row, floor)
        n = a.shape[0]
        half = eps[i] / 2.0
        lo, hi = _row_interval(a, sa, top, half, m)
        infeasible[i] = lo > hi + _FEASIBLE
        if infeasible[i]:
            out[i] = row
            continue
        lo = min(lo, hi)
        top_cost = math.log(top + floor)
        # Without the budget the optimum puts the k1 cheapest classes at the cap, k1 − 1 the
        # last count whose slope c_t + Σ_{j<k} c_j − (k + 1) c_k is >= 0 (it falls as k grows).
        # If that spends less than the budget, it is the optimum with the budget too.
        k0, k_hi = -1, n - 1
        while k0 < k_hi:
            mid = (k0 + k_hi + 1) >> 1
            if top_cost + sc[mid] - (mid + 1) * cost[mid] >= 0.0:
                k0 = mid
            else:
                k_hi = mid - 1
        k1 = k0 + 1
        best = (1.0 + k1 * m) / (k1 + 1)
        n_steps = 0
        if lo <= best <= hi:
            u = best - m
            r = np.searchsorted(a, u, side="right")
            spent = k1 * u - sa[k1] if k1 <= r else r * u - sa[r]
            if spent > half - max(best - top, 0.0) - _TIE:
                best = -1.0
        else:
            best = -1.0
        if best < 0.0:
            first = top if n >= _TOP_FIRST else -1.0
            best, n_steps = _row_search(lo, hi, first, a, sa, sc, sca, cost, top, top_cost, half, m)
        steps[i] = n_steps
        if n_steps >= 0:  # no solution is written from a search that did not converge
            _row_solution(best, m, half, top, a, sa, out[i], order, t)
    return -1


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


def _solve_compiled(
    y: np.ndarray, eps: np.ndarray, m: float, floor: float, *, checked: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The compiled solver over a batch; None if a row needs the full check (``checked=False``)."""
    n_rows = len(y)
    out = np.empty_like(y)
    infeasible = np.zeros(n_rows, dtype=bool)
    steps = np.zeros(n_rows, dtype=np.int64)
    if _solve_rows(y, eps, m, floor, checked, out, infeasible, steps) >= 0:
        return None
    if (steps < 0).any():  # pragma: no cover - the bracket collapses long before
        raise RuntimeError("solve_modelguard_w: the search over the top value did not converge.")
    return out, infeasible, steps


def _solve_fast(
    y: Any, epsilon: Any, margin: Any, log_floor: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The compiled solver with validation done cheaply, or None where the general checks must
    run: takes C-contiguous float64 batches and plain float parameters in range; rows are
    checked as :func:`check_probabilities` would (non-negative, summing to 1 within rounding),
    and anything else (other types, bad values, rows to renormalise) goes the general way, which
    validates, raises its errors and renormalises."""
    if not (
        type(y) is np.ndarray
        and y.ndim == 2
        and y.dtype == np.float64
        and y.flags.c_contiguous
        and y.shape[0] > 0
        and y.shape[1] > 1
        and isinstance(margin, float)
        and 0.0 <= margin < 1.0
        and isinstance(log_floor, float)
        and 0.0 < log_floor < math.inf
    ):
        return None
    n_rows = y.shape[0]
    if isinstance(epsilon, float):
        if not 0.0 <= epsilon < math.inf:
            return None
        eps = np.full(n_rows, epsilon)
    elif (
        type(epsilon) is np.ndarray
        and epsilon.shape == (n_rows,)
        and epsilon.dtype == np.float64
        and bool(np.all(epsilon >= 0.0))
        and bool(np.all(epsilon < math.inf))
    ):
        eps = epsilon
    else:
        return None
    return _solve_compiled(y, eps, float(margin), float(log_floor), checked=False)


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
    solved = _solve_fast(y, epsilon, margin, log_floor)
    if solved is None:
        y, eps, m, floor = _check_inputs(y, epsilon, margin, log_floor, "solve_modelguard_w")
        if y.shape[1] < 2 or not len(y):
            solved = y.copy(), np.zeros(len(y), dtype=bool), np.zeros(len(y), dtype=np.int64)
        else:
            solved = _solve_compiled(np.ascontiguousarray(y), eps, m, floor, checked=True)
    out, infeasible, steps = solved
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
