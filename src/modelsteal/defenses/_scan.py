"""Compiled scans of ModelGuard-S's centroid lists (numba).

A lookup of Algorithm 1 needs, for a quantized row q, the first centroid (in insertion order)
within the radius, and whether noise of the size of the band could change that answer (see
:mod:`modelsteal.defenses.modelguard_s`). Only centroids within the *outer* radius (radius plus
band) take part in that decision, so a distance is abandoned as soon as its partial sum passes the
outer radius: the sums only grow, and most centroids of a long list are far from q in their first
few coordinates. Coordinates are visited in q's order of decreasing value, where the differences
are largest.

Both scans return, per row, ``rank`` (the first centroid within the radius, or -1) and
``fragile``; the decision is the one of the ordered scan in the module docstring of
:mod:`~modelsteal.defenses.modelguard_s`:

- the first centroid within the outer radius is inside the radius: it answers, fragile if its
  distance is above ``radius − band``;
- it is just outside: the row is fragile, and the first centroid inside (if any) answers.

Distances are the ℓ1 (``euclid=False``) or ℓ2 distance, summed in the visiting order; both paths
of the defense use these functions, so the same row gets the same distances wherever it is
decided.
"""

from __future__ import annotations

import numpy as np

from modelsteal._jit import jit

__all__ = ["first_pin", "first_within", "grid_first_within", "quantize"]

_INF = np.inf
_HEAD = 16  # coordinates visited first, q's largest


@jit(nogil=True, inline="always")
def _distance(q, order, row, limit, limit_sq, euclid):  # pragma: no cover - compiled
    """The distance from q to row, or inf once it certainly exceeds ``limit``."""
    acc = 0.0
    if euclid:
        for k in order:
            diff = q[k] - row[k]
            acc += diff * diff
            if acc > limit_sq:
                return _INF
        return np.sqrt(acc)
    for k in order:
        acc += abs(q[k] - row[k])
        if acc > limit:
            return _INF
    return acc


@jit(nogil=True)
def quantize(y, precision, check, tol):  # pragma: no cover - compiled
    """Algorithm 1's rounding of each row of ``y``: to ``precision`` decimals (as ``np.round``:
    scale, round half to even, unscale), the top class raised by one unit of the last decimal
    where an earlier class rounded into a tie with it, then divided by the row's sum.

    Returns ``(q, labels, bad)``: ``labels`` the clean rows' top classes (the lowest index among
    ties); with ``check``, ``bad`` is the first row that is not a probability row as given
    (a negative or NaN entry, or a sum off 1 by more than ``tol``; the caller then validates the
    batch the general way), else -1.
    """
    n, c = y.shape
    q = np.empty((n, c))
    labels = np.empty(n, dtype=np.int64)
    scale = 10.0**precision
    unit = 10.0**-precision
    for i in range(n):
        row = y[i]
        if check:
            total = 0.0
            for k in range(c):
                if not row[k] >= 0.0:
                    return q, labels, i
                total += row[k]
            if not abs(total - 1.0) <= tol:
                return q, labels, i
        label = 0
        for k in range(c):
            q[i, k] = np.rint(row[k] * scale) / scale
            if row[k] > row[label]:
                label = k
        top = 0
        for k in range(1, c):
            if q[i, k] > q[i, top]:
                top = k
        if top != label:
            q[i, label] += unit
        total = 0.0
        for k in range(c):
            total += q[i, k]
        for k in range(c):
            q[i, k] /= total
        labels[i] = label
    return q, labels, -1


@jit(nogil=True)
def _visiting_order(q, head):  # pragma: no cover - compiled
    """q's ``head`` largest coordinates (largest first), then the others in index order."""
    c = q.shape[0]
    h = min(head, c)
    order = np.empty(c, dtype=np.int64)
    filled = 0  # insertion into the sorted head: a few comparisons per coordinate
    for idx in range(c):
        v = q[idx]
        if filled == h and v <= q[order[h - 1]]:
            continue
        pos = filled if filled < h else h - 1
        while pos > 0 and q[order[pos - 1]] < v:
            order[pos] = order[pos - 1]
            pos -= 1
        order[pos] = idx
        if filled < h:
            filled += 1
    taken = np.zeros(c, dtype=np.bool_)
    for k in range(h):
        taken[order[k]] = True
    pos = h
    for idx in range(c):
        if not taken[idx]:
            order[pos] = idx
            pos += 1
    return order


@jit(nogil=True)
def _scan(q, order, rows, radius, outer, outer_sq, euclid):  # pragma: no cover - compiled
    """Walk ``rows`` in order: the first within the radius and its distance, and the first
    within the outer radius (-1 where none; the scan stops at the first within the radius)."""
    near = -1
    for j in range(rows.shape[0]):
        d = _distance(q, order, rows[j], outer, outer_sq, euclid)
        if d <= outer:
            if near < 0:
                near = j
            if d <= radius:
                return j, d, near
    return -1, 0.0, near


@jit(nogil=True)
def first_pin(qs, pins, ranks, radius):  # pragma: no cover - compiled
    """For each row of ``qs`` (n, C), the rank of the earliest pin within ``radius`` in ℓ∞
    (``max |q − pin| <= radius``, abandoned at the first coordinate past it), or -1."""
    n, c = qs.shape
    out = np.full(n, -1, dtype=np.int64)
    for i in range(n):
        for j in range(pins.shape[0]):
            k = 0
            while k < c and abs(qs[i, k] - pins[j, k]) <= radius:
                k += 1
            if k == c:
                out[i] = ranks[j]
                break
    return out


@jit(nogil=True)
def first_within(qs, centroids, radius, band, euclid):  # pragma: no cover - compiled
    """The ordered scan of every row of ``qs`` (n, C) over ``centroids`` (m, C)."""
    n = qs.shape[0]
    rank = np.full(n, -1, dtype=np.int64)
    fragile = np.zeros(n, dtype=np.bool_)
    outer = radius + band
    outer_sq = outer * outer * (1.0 + 1e-9)
    for i in range(n):
        q = qs[i]
        j, d, near = _scan(q, _visiting_order(q, _HEAD), centroids, radius, outer, outer_sq, euclid)
        rank[i] = j
        fragile[i] = near >= 0 and (near < j or j < 0 or d > radius - band)
    return rank, fragile


@jit(nogil=True)
def _pivot_filter(others, pivot_d, lo, hi, reach, keep):  # pragma: no cover - compiled
    """Write into ``keep`` the positions j in [lo, hi) with |d(c_j, p) − d(q, p)| <= reach for
    every other pivot p (the triangle inequality's bound under d(q, c_j)) and return how many.
    One pivot at a time over the survivors of the ones before, without branches."""
    k = 0
    target, dist_p = pivot_d[1], others[0]
    for j in range(lo, hi):
        keep[k] = j
        k += abs(dist_p[j] - target) <= reach
    for p in range(1, others.shape[0]):
        target, dist_p = pivot_d[p + 1], others[p]
        kept = 0
        for i in range(k):
            j = keep[i]
            keep[kept] = j
            kept += abs(dist_p[j] - target) <= reach
        k = kept
    return k


@jit(nogil=True)
def grid_first_within(
    qs, pivots, keys, others, sketch, coords, ranks, centroids, size, radius, band, reach, euclid
):  # pragma: no cover - compiled
    """:func:`first_within` over a grid's candidates (see ``modelguard_s._Grid``).

    ``pivots`` (P, C): the grid's pivots (each row's distances to them are computed here, in
    index order; the bounds' slack ``reach`` covers their rounding); ``keys`` (size,): the grid's
    centroids' distances to the first pivot, ascending; ``others`` (P − 1, size): their distances
    to the other pivots; ``sketch`` (size, K): the centroids' values at the K coordinates
    ``coords`` (a part of a distance bounds it from below, so a candidate is dropped once that
    part passes the outer radius; ``sketch`` is read row by row, the centroids themselves only
    for the survivors); ``ranks``: the grid's centroids' ranks in that order; ``centroids``: the
    class's list (at least ``size`` long), whose entries from ``size`` on, appended after the
    grid was made, are all candidates. The decision is the ordered scan's over the candidates:
    the lowest-ranked within the radius answers; it is fragile if it lies within the band of the
    radius, or if a candidate of lower rank lies within the outer radius.
    """
    n = qs.shape[0]
    n_other = others.shape[0]
    tail = centroids[size:]
    rank = np.full(n, -1, dtype=np.int64)
    fragile = np.zeros(n, dtype=np.bool_)
    outer = radius + band
    outer_sq = outer * outer * (1.0 + 1e-9)
    low = radius - band
    # a part of a distance, summed in another order, may round above the whole: a little slack
    part_limit = outer_sq if euclid else outer * (1.0 + 1e-9)
    big = size + tail.shape[0]
    n_sketch = coords.shape[0]
    q_sketch = np.empty(n_sketch)
    keep = np.empty(size, dtype=np.int64)
    n_pivots = pivots.shape[0]
    pivot_d = np.empty(n_pivots)
    for i in range(n):
        q = qs[i]
        order = _visiting_order(q, _HEAD)
        for p in range(n_pivots):
            acc = 0.0
            for k in range(q.shape[0]):
                diff = q[k] - pivots[p, k]
                acc += diff * diff if euclid else abs(diff)
            pivot_d[p] = np.sqrt(acc) if euclid else acc
        for k in range(n_sketch):
            q_sketch[k] = q[coords[k]]
        d1 = pivot_d[0]
        lo = np.searchsorted(keys, d1 - reach, side="left")
        hi = np.searchsorted(keys, d1 + reach, side="right")
        first_in, d_first, first_near = big, 0.0, big
        if n_other:
            n_keep = _pivot_filter(others, pivot_d, lo, hi, reach, keep)
        else:
            n_keep = hi - lo
            keep[:n_keep] = np.arange(lo, hi)
        for c in range(n_keep):
            j = keep[c]
            r = ranks[j]
            if r >= first_in:  # cannot change the decision: not first inside, not before it
                continue
            part = 0.0
            for k in range(n_sketch):
                diff = q_sketch[k] - sketch[j, k]
                part += diff * diff if euclid else abs(diff)
            if part > part_limit:
                continue
            d = _distance(q, order, centroids[r], outer, outer_sq, euclid)
            if d <= outer:
                if r < first_near:
                    first_near = r
                if d <= radius:
                    first_in, d_first = r, d
        if first_in == big:  # the tail's ranks follow the grid's: scan it in order
            j, d, near = _scan(q, order, tail, radius, outer, outer_sq, euclid)
            if near >= 0 and size + near < first_near:
                first_near = size + near
            if j >= 0:
                first_in, d_first = size + j, d
        if first_in == big:
            fragile[i] = first_near < big
        else:
            rank[i] = first_in
            fragile[i] = d_first > low or first_near < first_in
    return rank, fragile
