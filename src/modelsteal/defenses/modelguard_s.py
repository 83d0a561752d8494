"""ModelGuard-S: ordered incremental quantization of predictions (Tang et al., 2024).

Paper: "ModelGuard: Information-Theoretic Defense Against Model Extraction Attacks", USENIX
Security 2024, Section 3.5 and Algorithm 1 (https://www.usenix.org/conference/usenixsecurity24/
presentation/tang). Peer implementation: ``victim/quantize.py::incremental_kmeans`` with
``ordered_quantization=True, optim=False``.

**Algorithm 1.** Each class ``c`` keeps an ordered list of centroids. A clean row ``y`` with top-1
class ``c`` is answered with the *first* centroid of ``c``'s list (in insertion order) within
distance ε of ``y``; if there is none, ``y`` is appended to the list and returned. Because the list
only grows at its end, a row that matched centroid ``k`` keeps matching ``k`` whatever is appended
later: the same clean prediction always gets the same answer (Figure 2, d–f). The non-ordered
variant (``ordered=False``) answers with the *nearest* centroid within ε instead; its answer to a
repeated query changes when a nearer centroid is added later (Figure 2, a–c), which is the leak
that m-QPI attackers exploit (Table 6). It is here for that ablation.

Where this implementation departs from the paper, and why:

- **Fixed precision.** Clean rows are rounded to ``precision`` decimals and renormalised before
  lookup and insertion, so the centroids are deterministic functions of the predictions and are
  stored exactly (float64 bytes). When rounding makes an earlier class tie with the top class,
  the top entry is raised by one unit of the last decimal, so every centroid of class ``c`` has
  ``argmax == c`` (numpy's first-index rule) and the argmax is preserved.
- **Rounding alone does not absorb float noise.** The same input gives predictions that differ
  by ~1e-7 between single and batched inference (and between BLAS builds); any rounding grid has
  boundaries, and a value next to one rounds either way. More fundamentally, *no* deterministic
  function of the noisy row can be insensitive to noise everywhere: its answer has to change
  somewhere (at the ε-spheres around centroids), and a row sitting on such a boundary flips with
  noise of any size. So the defense remembers those rows:

  - ``tolerance`` τ is the per-entry noise we treat as "the same prediction"; after rounding, two
    observations of one prediction differ by at most ``δ = 2τ + (C + 6)·10^-precision`` per entry,
    and their distances to any centroid by at most ``ρ = C·δ`` (ℓ1; ``√C·δ`` for ℓ2).
  - A row is *fragile* when a distance that decides its answer lies within ρ of the matching
    radius (its answer's distance, or an earlier centroid's). Fragile rows are written to the
    store as **pins** (row, answered rank). Every row is first looked up among the pins of its
    class: the earliest pin within δ (ℓ∞) decides the answer. Non-fragile rows need no pin: every
    row within ρ of them decides the same way.
  - So every observation of a prediction gets the answer of its first observation, provided no
    *other* prediction within ~3δ of it was pinned first (two predictions that close are
    indistinguishable from noise; they may share one answer). Pins are rare (rows within ρ of a
    sphere) and are state like the centroids: durable, ordered, atomic.
  - The margin has a price of ~2ρ in ε: centroids match within ``ε − 2ρ`` (about ε − 4e-5 with
    10 classes and the defaults), so the answer stays within ε of the *unrounded* clean row even
    when it came from a pin — ``max_l1 = ε`` holds exactly.

  The non-ordered variant writes no pins: its answers are not meant to be stable.

**State.** Centroids and pins live in a :class:`~modelsteal.defenses.stores.CentroidStore` under a
namespace that digests the configuration (ε, norm, ordering, precision, tolerance), so one SQLite
file can serve several configurations without mixing them. A batch is answered in two steps:

1. *Lookups on the cached state, vectorised per class, no lock.* The cache of a store may lag
   behind other writers, but it is a prefix of the true (append-only, id-ordered) lists. For the
   ordered variant a match found in a prefix is the first match overall — a centroid missing from
   the cache was appended after every cached one, so it cannot come first; the same holds for
   the earliest pin. Rows answered this way (non-fragile matches, pin hits) change no state and
   touch no disk. The non-ordered variant needs the nearest centroid among *all*, so it refreshes
   the cache first (one indexed read of the rows appended since).
2. *Decisions that change state, one writer at a time.* Rows with no match in the cache, and
   fragile rows, are decided again inside ``store.exclusive`` on complete state, in batch order
   (a centroid appended for row i is visible to row i + 1, as in Algorithm 1), and the batch's
   answers are returned only after the block has committed what they depend on.

The ordered scan is compiled (:mod:`modelsteal.defenses._scan`): each row walks the list in
order and stops at its first match, and a distance is abandoned once its partial sum passes the
outer radius (most centroids are far from a row in its first few coordinates), so a lookup
costs a few operations per centroid read. See ``benchmarks/modelguard_s.py``.

**Shortcuts that change no answer** (``benchmarks/defenses.py`` measures them):

- *A memo of answers.* The ordered variant's answer to a prediction never changes, and it is
  committed before it is returned, so each defense remembers the last ``_MEMO_SIZE`` answers it
  gave, keyed by the bytes of the clean float64 row. A batch whose rows are all in the memo is
  answered from it without any check, rounding or lookup (a row equal byte for byte to a row
  that passed the checks passes them). Other batches take the full path, which remembers them.
- *Single rows* are looked up without the batch machinery: the same rounding (one compiled
  function rounds for every path), pins and decision, for one row. A row that needs a change of
  state (no match, or a fragile one) takes what that lookup learned straight to the write lock,
  as the batch path does after its own lookup.
- *A grid over long lists* (:class:`_Grid`) finds, by the triangle inequality with eight
  pivots, the few centroids that can take part in a row's lookup, and decides from them as the
  full scan would. It is used for single rows from ``_GRID_FROM`` centroids in a class and for
  batches once a full scan would read ``_GRID_BATCH_FROM`` entries per row, where it prunes
  (with many classes and spread-out centroids, distances concentrate and it does not: the
  lists are then scanned as before).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial.distance import cdist

from modelsteal._checks import (
    FAST_EXACT_SUM,
    check_choice,
    check_float,
    check_int,
    check_probabilities,
)
from modelsteal.defenses import _scan
from modelsteal.defenses._base import DEFENSES, Defense, _onto_simplex
from modelsteal.defenses.stores import (
    CentroidStore,
    CentroidStoreError,
    CentroidWriter,
    ClassView,
    MemoryCentroidStore,
    SQLiteCentroidStore,
)
from modelsteal.errors import InvalidParameterError

__all__ = ["ModelGuardS"]

_OWNER = "ModelGuardS"
_GRID_FROM = 1024  # centroids in a class from which single-row lookups use a grid
_GRID_BATCH_FROM = 1 << 16  # ... and batches, once a full scan reads this many entries per row
_GRID_KEEPS = 0.2  # a grid is used if its lookups do at most this fraction of a scan's work
_GRID_PIVOTS = 8  # pivots of a grid
_GRID_TAIL = 256  # centroids appended after a grid before they are merged into it
_GRID_SKETCH = 16  # coordinates of each centroid a grid keeps together (two cache lines)
_MEMO_SIZE = 1 << 16  # answered predictions remembered per defense (oldest forgotten first)
_EXACT_SUM = FAST_EXACT_SUM  # a row taken as is by the compiled path
_NO_DIST = np.zeros(0)  # _Prefix.dist of the ordered variant (not used)
_NO_DIST.setflags(write=False)


@dataclass(frozen=True)
class _Geometry:
    """Radii for one number of classes (see the module docstring)."""

    radius: float  # a centroid matches within this distance (ε − 2ρ)
    band: float  # ρ: how far noise can move a distance
    pin_radius: float  # δ: ℓ∞ distance within which a pin applies


@DEFENSES.register("modelguard_s")
class ModelGuardS(Defense):
    """ModelGuard-S: answer with the first centroid of the top-1 class within ε (Algorithm 1).

    Parameters
    ----------
    epsilon:
        The distortion budget ε, in (0, 2]: every answer is within ε of the clean row (in ``norm``).
    norm:
        ``"l1"`` (the paper's default) or ``"l2"``.
    ordered:
        True for ModelGuard-S (first centroid within ε); False for the non-ordered variant
        (nearest centroid within ε), which leaks under repeated queries (Tang et al., Table 6).
    store:
        Where centroids live: a :class:`~modelsteal.defenses.stores.CentroidStore`, a path to an
        SQLite file (durable, shareable by processes; every commit flushed to the disk), or None
        for a store in memory. ``SQLiteCentroidStore(path, synchronous="NORMAL")`` makes commits
        cheaper and survives process crashes but not power loss.
    precision:
        Decimals to which clean rows are rounded before lookup and insertion.
    tolerance:
        Per-entry float noise (e.g. batched vs single inference) under which a prediction still
        counts as the same one; rows that close to a decision boundary are pinned.

    A defense built from a path owns its store: :meth:`close` closes it.
    """

    name = "modelguard_s"
    preserves_argmax = True
    stateful = True

    def __init__(
        self,
        *,
        epsilon: float = 1.0,
        norm: str = "l1",
        ordered: bool = True,
        store: CentroidStore | str | os.PathLike[str] | None = None,
        precision: int = 9,
        tolerance: float = 1e-6,
    ) -> None:
        self.epsilon = check_float(
            epsilon, name="epsilon", owner=_OWNER, low=0.0, high=2.0, low_open=True
        )
        self.norm = check_choice(norm, name="norm", owner=_OWNER, choices=("l1", "l2"))
        if not isinstance(ordered, bool | np.bool_):
            raise InvalidParameterError(
                f"The 'ordered' parameter of {_OWNER} must be a bool. Got {ordered!r} instead."
            )
        self.ordered = bool(ordered)
        self.precision = check_int(precision, name="precision", owner=_OWNER, low=1, high=12)
        self.tolerance = check_float(tolerance, name="tolerance", owner=_OWNER, low=0.0, high=1e-3)
        self.store = store
        if store is None:
            self._store: CentroidStore = MemoryCentroidStore()
            self._owns_store = True
        elif isinstance(store, str | os.PathLike):
            self._store = SQLiteCentroidStore(store)
            self._owns_store = True
        elif isinstance(store, CentroidStore):
            self._store = store
            self._owns_store = False
        else:
            raise InvalidParameterError(
                f"The 'store' parameter of {_OWNER} must be a CentroidStore, a path to an SQLite "
                f"file, or None. Got {store!r} instead."
            )
        config = self._config()
        digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
        self._namespace = f"modelguard_s-{digest[:16]}"
        self._store.open_namespace(self._namespace, config)
        self._metric = "cityblock" if self.norm == "l1" else "euclidean"
        # Answers already given, by the bytes of the clean row (ordered variant only: the
        # non-ordered one may answer a repeated prediction differently, by design).
        # an OrderedDict forgets its oldest entry in O(1); a dict's first entry is found by
        # skipping the holes its deletions left, which grows with the number of deletions
        self._memo: OrderedDict[bytes, bytes] | None = OrderedDict() if self.ordered else None
        self._memo_lock = threading.Lock()
        self._geometries: dict[int, _Geometry] = {}
        self._grids: dict[int, _Grid] = {}  # per class, for single-row lookups in long lists

    # -- promises -----------------------------------------------------------------------------

    @property
    def max_l1(self) -> float | None:
        """ε for the ℓ1 norm; no ℓ1 promise for ℓ2 (it depends on the number of classes)."""
        return self.epsilon if self.norm == "l1" else None

    # -- reports ------------------------------------------------------------------------------

    @property
    def namespace(self) -> str:
        """The store namespace of this configuration (a digest of its parameters)."""
        return self._namespace

    def centroid_counts(self) -> dict[int, int]:
        """Centroids per class (classes without any are left out), as stored right now."""
        return self._store.counts(self._namespace)

    def n_centroids(self) -> int:
        """The total number of centroids, over all classes."""
        return sum(self.centroid_counts().values())

    def n_pins(self) -> int:
        """How many near-boundary rows are pinned to their first answer."""
        return self._store.n_pins(self._namespace)

    def centroids(self, label: int) -> np.ndarray:
        """A copy of class ``label``'s centroids, in order (shape (m, C))."""
        return np.array(self._store.view(self._namespace, label, fresh=True).centroids)

    def close(self) -> None:
        """Close the store if this defense opened it (from a path)."""
        if self._owns_store:
            self._store.close()

    # -- the defense --------------------------------------------------------------------------

    def perturb(self, y: np.ndarray, *, x: np.ndarray | None = None) -> np.ndarray:
        """Return the defended rows for clean probability rows ``y`` (shape (n, C)).

        As :meth:`Defense.perturb`, with two shortcuts that change no answer:

        - a prediction answered before (the same float64 row, byte for byte) gets the answer it
          got then, from a memo of the last ``_MEMO_SIZE`` answers of this process. Those
          answers were committed before they were returned, and an answer of the ordered
          variant never changes (see the module docstring), so the memo only skips the work of
          finding it again. A batch is answered from the memo only if every row is in it;
          rows are only ever remembered after they passed the full checks;
        - a single row is looked up without the batch machinery, and decided under the write
          lock from that lookup when it needs a change of state (:meth:`_answer_one`).
        """
        memo = self._memo
        if memo is None or type(y) is not np.ndarray or y.dtype != np.float64 or y.ndim != 2:
            return self._answer(y)
        n, c = y.shape
        if n == 1 and c:
            hit = memo.get(y.tobytes())
            if hit is not None:
                return np.frombuffer(bytearray(hit)).reshape(1, c)
            return self._answer_one(y)
        if n and c:
            data, width = np.ascontiguousarray(y).tobytes(), 8 * c
            hits = [memo.get(data[i : i + width]) for i in range(0, len(data), width)]
            if None not in hits:
                return np.frombuffer(bytearray(b"".join(hits))).reshape(n, c)
        return self._answer(y)

    def _answer(self, y: Any) -> np.ndarray:
        """:meth:`Defense.perturb`'s path (checks, Algorithm 1, simplex), then remember."""
        clean = check_probabilities(y, where=f"{type(self).__name__}.perturb(y)")
        out = _onto_simplex(np.asarray(self._perturb(clean, None), dtype=np.float64))
        if self._memo is not None:
            self._remember(clean, out)
        return out

    def _answer_one(self, y: np.ndarray) -> np.ndarray:
        """One float64 row of the ordered variant, without the batch machinery.

        The row is taken as is only where :func:`check_probabilities` would (non-negative,
        summing to 1 within rounding); anything else takes :meth:`_answer`. A pin or a match
        that is not fragile answers without any lock. Otherwise what the lookup learned of the
        prefix it read goes straight to :meth:`_decide` under the write lock (as
        :meth:`_perturb` would after looking the row up again): it appends a centroid, or a pin,
        or finds what other writers committed meanwhile. Every answer is a stored centroid,
        already on the simplex, which :func:`_onto_simplex` would leave as it is.
        """
        qs, labels, bad = _scan.quantize(y, self.precision, True, _EXACT_SUM)
        if bad >= 0:
            return self._answer(y)
        q, label, n_classes = qs[0], int(labels[0]), y.shape[1]
        geo = self._geometry(n_classes)
        view = self._store.view(self._namespace, label)
        _check_width(view, n_classes, label)
        rank, fragile = -1, False
        if len(view.pins):
            rank = int(_first_pin(qs, view.pins, view.pin_ranks, geo.pin_radius)[0])
        if rank < 0:
            cents = view.centroids
            grid = self._grid(label, cents, geo) if len(cents) >= _GRID_FROM else None
            if grid is not None and grid.useful:
                rank, fragile = grid.first_within(q, cents, geo)
            else:
                found, near_edge = _first_within(q[None], cents, geo, self._metric)
                rank, fragile = int(found[0]), bool(near_edge[0])
        if rank >= 0 and not fragile:
            out = view.centroids[rank : rank + 1].copy()
        else:
            none = np.array([-1], dtype=np.int64)
            prefix = _Prefix(
                len(view.centroids),
                len(view.pins),
                none,
                none,
                np.array([rank], dtype=np.int64),
                np.array([fragile]),
                _NO_DIST,
            )
            with self._store.exclusive(self._namespace) as writer:
                out = self._decide(writer, label, qs, prefix, geo, n_classes)
            # Leaving the block committed the centroid or pin this answer depends on.
        self._remember(y, out)
        return out

    def _grid(self, label: int, centroids: np.ndarray, geo: _Geometry) -> _Grid:
        """The grid of class ``label``: extended once ``_GRID_TAIL`` centroids were appended
        after it, built anew (new pivots) once the class has doubled since it was built."""
        grid = self._grids.get(label)
        if grid is not None and grid.size <= len(centroids) <= grid.size + _GRID_TAIL:
            return grid
        if grid is None or not grid.size < len(centroids) <= 2 * grid.built:
            grid = _Grid(centroids, geo.radius + geo.band, self._metric)
        else:
            grid = grid.extended(centroids)
        self._grids[label] = grid
        return grid

    def _remember(self, clean: np.ndarray, out: np.ndarray) -> None:
        memo = self._memo
        if memo is None or clean.shape != out.shape or not clean.size:
            return
        keys = np.ascontiguousarray(clean, dtype=np.float64).tobytes()
        values = np.ascontiguousarray(out, dtype=np.float64).tobytes()
        width = 8 * clean.shape[1]
        with self._memo_lock:
            for i in range(0, len(keys), width):
                memo[keys[i : i + width]] = values[i : i + width]
            while len(memo) > _MEMO_SIZE:  # forget the oldest
                memo.popitem(last=False)

    def _config(self) -> dict[str, Any]:
        return {
            "defense": "modelguard_s",
            "format": 1,
            "epsilon": self.epsilon,
            "norm": self.norm,
            "ordered": self.ordered,
            "precision": self.precision,
            "tolerance": self.tolerance,
        }

    def _geometry(self, n_classes: int) -> _Geometry:
        geo = self._geometries.get(n_classes)
        if geo is None:
            geo = self._geometries[n_classes] = self._make_geometry(n_classes)
        return geo

    def _make_geometry(self, n_classes: int) -> _Geometry:
        unit = 10.0**-self.precision
        pin_radius = 2.0 * self.tolerance + (n_classes + 6) * unit
        band = pin_radius * (n_classes if self.norm == "l1" else math.sqrt(n_classes))
        radius = self.epsilon - 2.0 * band - 1e-12
        if radius <= 2.0 * band:
            raise InvalidParameterError(
                f"{_OWNER}: epsilon={self.epsilon:g} is too small for tolerance="
                f"{self.tolerance:g} and precision={self.precision} with {n_classes} classes "
                f"(noise could move a distance by {band:.3g}). Use epsilon > {4 * band:.3g}, or "
                "a smaller tolerance."
            )
        return _Geometry(radius=radius, band=band, pin_radius=pin_radius)

    def _quantize(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Round to ``precision``, keep the top class strictly first, renormalise (compiled:
        :func:`modelsteal.defenses._scan.quantize`, the same operations for every path)."""
        q, labels, _ = _scan.quantize(
            np.ascontiguousarray(y, dtype=np.float64), self.precision, False, _EXACT_SUM
        )
        return q, labels

    def _perturb(self, y: np.ndarray, x: np.ndarray | None) -> np.ndarray:
        n_classes = y.shape[1]
        geo = self._geometry(n_classes)
        q, labels = self._quantize(y)
        out = np.empty_like(q)
        pending: dict[int, tuple[np.ndarray, _Prefix]] = {}
        classes = [int(labels[0])] if labels.min() == labels.max() else np.unique(labels).tolist()
        for label in classes:
            rows = np.flatnonzero(labels == label) if len(classes) > 1 else np.arange(len(q))
            view = self._store.view(self._namespace, label, fresh=not self.ordered)
            _check_width(view, n_classes, label)
            prefix = self._lookup(q[rows], view, geo, label)
            found = prefix.answer >= 0
            if found.any():
                out[rows[found]] = view.centroids[prefix.answer[found]]
            if not found.all():
                pending[label] = rows[~found], prefix.subset(~found)
        if pending:
            with self._store.exclusive(self._namespace) as writer:
                for label, (rows, prefix) in pending.items():
                    out[rows] = self._decide(writer, label, q[rows], prefix, geo, n_classes)
            # Leaving the block committed every centroid and pin these answers depend on.
        return out

    def _lookup(self, qs: np.ndarray, view: ClassView, geo: _Geometry, label: int) -> _Prefix:
        """Scan ``view`` (a prefix of the class's lists) for every row at once, without a lock.

        ``answer`` holds the ranks that need no change of state: for the ordered variant a pin
        hit, or a match that is not fragile (the first match within a prefix is the first match
        overall); for the non-ordered variant the nearest match in a fresh view.
        """
        n = len(qs)
        if not self.ordered:
            rank, dist = _nearest_within(qs, view.centroids, geo.radius, self._metric)
            none = np.full(n, -1, dtype=np.int64)
            return _Prefix(len(view.centroids), 0, rank, none, rank, np.zeros(n, bool), dist)
        pinned = _first_pin(qs, view.pins, view.pin_ranks, geo.pin_radius)
        cents = view.centroids
        grid = None
        if len(cents) >= _GRID_FROM and len(cents) * cents.shape[1] >= _GRID_BATCH_FROM:
            grid = self._grid(label, cents, geo)
        if grid is not None and grid.useful:
            rank, fragile = grid.first_within_rows(qs, cents, geo)
        else:
            rank, fragile = _first_within(qs, cents, geo, self._metric)
        answer = np.where(pinned >= 0, pinned, np.where(fragile, -1, rank))
        return _Prefix(len(view.centroids), len(view.pins), answer, pinned, rank, fragile, _NO_DIST)

    def _decide(
        self,
        writer: CentroidWriter,
        label: int,
        qs: np.ndarray,
        prefix: _Prefix,
        geo: _Geometry,
        n_classes: int,
    ) -> np.ndarray:
        """Algorithm 1, row after row, on the complete state of one class (inside the lock).

        What the lock-free scan learned from the prefix it saw still holds (the lists only grow at
        their ends), so each row only has to look at the *tail*: centroids and pins committed by
        other writers since that prefix, then those appended by the rows before it.
        """
        view = writer.view(label)
        _check_width(view, n_classes, label)
        committed, m0 = view.centroids, prefix.n_centroids
        if len(committed) < m0 or len(view.pins) < prefix.n_pins:
            raise CentroidStoreError(
                f"Class {label} of the store shrank while it was read; its lists must only grow."
            )
        tail = np.empty((len(committed) - m0 + len(qs), n_classes))
        t = len(committed) - m0
        if t:
            tail[:t] = committed[m0:]
        pins = np.empty((len(view.pins) - prefix.n_pins + len(qs), n_classes))
        n_pins = len(view.pins) - prefix.n_pins
        if n_pins:
            pins[:n_pins] = view.pins[prefix.n_pins :]
        pin_ranks = view.pin_ranks[prefix.n_pins :].tolist()
        out = np.empty_like(qs)
        for j, row in enumerate(qs):
            if self.ordered:
                rank = int(prefix.pinned[j])
                if rank < 0 and n_pins:
                    hit = _first_pin(
                        row[None], pins[:n_pins], np.asarray(pin_ranks), geo.pin_radius
                    )
                    rank = int(hit[0])
                if rank < 0:
                    rank, fragile = int(prefix.rank[j]), bool(prefix.fragile[j])
                    if rank < 0 and t:
                        more, more_fragile = _first_within(row[None], tail[:t], geo, self._metric)
                        fragile = fragile or bool(more_fragile[0])
                        rank = m0 + int(more[0]) if more[0] >= 0 else -1
                    if rank < 0:
                        rank = writer.append_centroid(label, row)
                        tail[t] = row
                        t += 1
                    if fragile:
                        writer.add_pin(label, row, rank)
                        pins[n_pins] = row
                        pin_ranks.append(rank)
                        n_pins += 1
            else:
                rank = int(prefix.rank[j])
                if t:
                    d = cdist(row[None], tail[:t], self._metric)[0]
                    k = int(d.argmin())
                    if d[k] <= geo.radius and d[k] < prefix.dist[j]:  # ties: the earlier one
                        rank = m0 + k
                if rank < 0:
                    rank = writer.append_centroid(label, row)
                    tail[t] = row
                    t += 1
            if not 0 <= rank < m0 + t:
                raise CentroidStoreError(
                    f"The store gave rank {rank} to a centroid of class {label}, but only "
                    f"{m0 + t} exist. Another writer changed the namespace without its lock."
                )
            out[j] = committed[rank] if rank < m0 else tail[rank - m0]
        return out


@dataclass(frozen=True)
class _Prefix:
    """What the lock-free scan of a prefix (``n_centroids`` centroids, ``n_pins`` pins) found.

    Per row: ``answer`` (a rank if no state change is needed, else -1), ``pinned`` (the earliest
    pin's rank, or -1), ``rank`` (ordered: the first centroid within the radius; non-ordered: the
    nearest one; -1 if none), ``fragile`` (ordered only) and ``dist`` (non-ordered only: the
    distance to the nearest centroid, inf if none).
    """

    n_centroids: int
    n_pins: int
    answer: np.ndarray
    pinned: np.ndarray
    rank: np.ndarray
    fragile: np.ndarray
    dist: np.ndarray

    def subset(self, keep: np.ndarray) -> _Prefix:
        dist = self.dist[keep] if len(self.dist) else self.dist
        return _Prefix(
            self.n_centroids,
            self.n_pins,
            self.answer[keep],
            self.pinned[keep],
            self.rank[keep],
            self.fragile[keep],
            dist,
        )


def _check_width(view: ClassView, n_classes: int, label: int) -> None:
    for name, rows in (("centroids", view.centroids), ("pins", view.pins)):
        if len(rows) and rows.shape[1] != n_classes:
            raise CentroidStoreError(
                f"The store holds {name} of length {rows.shape[1]} for class {label}, but these "
                f"predictions have {n_classes} classes. Use one store (or SQLite file) per model."
            )


def _first_pin(qs: np.ndarray, pins: np.ndarray, ranks: np.ndarray, radius: float) -> np.ndarray:
    """The rank of the earliest pin within ``radius`` (ℓ∞) of each row, or -1."""
    if not len(pins):
        return np.full(len(qs), -1, dtype=np.int64)
    return _scan.first_pin(qs, pins, ranks, radius)


def _first_within(
    qs: np.ndarray, centroids: np.ndarray, geo: _Geometry, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """For each row: the first centroid within the radius (or -1), and whether it is fragile.

    Fragile means noise of up to ``geo.band`` in the distances could change the answer: the first
    centroid within ``radius + band`` is not within ``radius - band`` — it is the match but barely,
    or an earlier centroid just outside (or, with no match at all, any centroid just outside).
    The list is scanned in order (compiled: :func:`modelsteal.defenses._scan.first_within`); a
    row leaves the scan at its first match, since nothing after it can change its answer.
    """
    if not len(centroids) or not len(qs):
        return np.full(len(qs), -1, dtype=np.int64), np.zeros(len(qs), dtype=bool)
    return _scan.first_within(
        np.ascontiguousarray(qs, dtype=np.float64),
        np.ascontiguousarray(centroids, dtype=np.float64),
        geo.radius,
        geo.band,
        metric == "euclidean",
    )


class _Grid:
    """Where the first ``size`` centroids of a class lie, for single-row lookups.

    Only centroids within the outer radius (the radius plus the noise band) of a row take part
    in its ordered lookup (module docstring); the grid finds a small set that holds all of
    them, by the triangle inequality: a centroid c within the outer radius of q has
    |d(c, p) − d(q, p)| <= outer for every pivot p. The pivots are ``_GRID_PIVOTS`` centroids
    far apart (each the farthest from those chosen before); the centroids are kept sorted by
    their distance to the first, so a lookup bisects the window of width 2 · outer around
    d(q, p₁), keeps those in it whose distances to the other pivots are within outer of q's
    (the bounds widened by a relative 1e-9 against rounding; one pivot at a time over the
    survivors of the ones before), drops those whose distance over the sixteen most varied
    coordinates (kept together, two cache lines per centroid) already passes the outer radius,
    computes the distances to the rest and to the centroids appended after the grid was built,
    and decides from them exactly as the full ordered scan does (compiled:
    :func:`modelsteal.defenses._scan.grid_first_within`). A grid never changes: centroids
    appended since are merged into a new one (:meth:`extended`, the same pivots), and a class
    that has doubled since its grid was built gets a new grid with new pivots.

    Pivots only prune where distances to them spread more than the outer radius; with many
    classes and spread-out centroids they concentrate (all centroids at nearly one distance
    from any point), and a lookup would keep most of the list. A grid therefore measures, on
    32 of its own centroids, the work a lookup does (window entries times pivots, plus the
    distances it keeps); ``useful`` says whether that is well below a full scan, and the
    callers scan the list as before where it is not.
    """

    __slots__ = (
        "built",
        "keys",
        "metric",
        "others",
        "outer",
        "pivots",
        "ranks",
        "reach",
        "size",
        "sketch",
        "sketch_coords",
        "useful",
    )

    def __init__(self, centroids: np.ndarray, outer: float, metric: str) -> None:
        self.size, self.outer, self.metric = len(centroids), outer, metric
        self.built = self.size
        self.reach = outer * (1.0 + 1e-9) + 1e-12  # rounding of the pivot distances
        n_pivots = min(_GRID_PIVOTS, self.size)
        mean = centroids.mean(axis=0, keepdims=True)
        picks = [int(cdist(mean, centroids, metric)[0].argmax())]
        nearest = cdist(centroids[picks[0]][None], centroids, metric)[0]
        for _ in range(n_pivots - 1):  # farthest-point choice
            picks.append(int(nearest.argmax()))
            nearest = np.minimum(nearest, cdist(centroids[picks[-1]][None], centroids, metric)[0])
        d = cdist(centroids, centroids[picks], metric)
        spread = np.argsort(-d.std(axis=0), kind="stable")  # sort by the most spread-out pivot
        self.pivots = np.ascontiguousarray(centroids[picks][spread])
        d = d[:, spread]
        order = np.argsort(d[:, 0], kind="stable")
        self.ranks = order.astype(np.int64)
        # the most varied coordinates, stored together: a cheap lower bound on each distance
        coords = np.argsort(-centroids.var(axis=0), kind="stable")[:_GRID_SKETCH]
        self.sketch_coords = coords.astype(np.int64)
        self.sketch = np.ascontiguousarray(centroids[:, coords][order])
        self.keys = np.ascontiguousarray(d[order, 0])
        self.others = np.ascontiguousarray(d[order, 1:].T)  # one row per pivot: fast to reduce
        work = 0
        for pivot_d in d[np.linspace(0, self.size - 1, 32).astype(np.int64)]:
            lo, hi, keep = self._window(pivot_d)
            work += (hi - lo) * n_pivots + len(keep) * centroids.shape[1]
        self.useful = work <= _GRID_KEEPS * 32 * self.size * centroids.shape[1]

    def extended(self, centroids: np.ndarray) -> _Grid:
        """A new grid that also holds ``centroids[size:]`` (appended since), with the same pivots
        and sketch coordinates: their distances to the pivots are merged into the sorted order.
        (This grid is left as it is: lookups in flight may be reading it.)"""
        new = centroids[self.size :]
        d = cdist(new, self.pivots, self.metric)
        order = np.argsort(d[:, 0], kind="stable")
        d = d[order]
        at = np.searchsorted(self.keys, d[:, 0], side="right")
        grid = object.__new__(_Grid)
        for name in ("metric", "outer", "pivots", "reach", "built", "sketch_coords", "useful"):
            setattr(grid, name, getattr(self, name))
        grid.size = len(centroids)
        grid.keys = np.insert(self.keys, at, d[:, 0])
        grid.others = np.ascontiguousarray(np.insert(self.others, at, d[:, 1:].T, axis=1))
        grid.ranks = np.insert(self.ranks, at, self.size + order)
        grid.sketch = np.ascontiguousarray(
            np.insert(self.sketch, at, new[order][:, self.sketch_coords], axis=0)
        )
        return grid

    def _window(self, pivot_d: np.ndarray) -> tuple[int, int, np.ndarray]:
        """The window [lo, hi) of the grid's order around d(q, p₁), and the entries of it
        (grid positions) within reach of q's distances to the other pivots."""
        reach, d1 = self.reach, float(pivot_d[0])
        lo = int(np.searchsorted(self.keys, d1 - reach, side="left"))
        hi = int(np.searchsorted(self.keys, d1 + reach, side="right"))
        if hi <= lo:
            return lo, hi, np.zeros(0, dtype=np.int64)
        gap = self.others[:, lo:hi] - pivot_d[1:, None]
        np.abs(gap, out=gap)
        return lo, hi, lo + np.flatnonzero(gap.max(axis=0) <= reach)

    def first_within_rows(
        self, qs: np.ndarray, centroids: np.ndarray, geo: _Geometry
    ) -> tuple[np.ndarray, np.ndarray]:
        """:func:`_first_within` for ``centroids`` (a prefix at least ``size`` long)."""
        return _scan.grid_first_within(
            np.ascontiguousarray(qs, dtype=np.float64),
            self.pivots,
            self.keys,
            self.others,
            self.sketch,
            self.sketch_coords,
            self.ranks,
            np.ascontiguousarray(centroids),
            self.size,
            geo.radius,
            geo.band,
            self.reach,
            self.metric == "euclidean",
        )

    def first_within(
        self, q: np.ndarray, centroids: np.ndarray, geo: _Geometry
    ) -> tuple[int, bool]:
        """:meth:`first_within_rows` for one row."""
        rank, fragile = self.first_within_rows(q[None], centroids, geo)
        return int(rank[0]), bool(fragile[0])


def _nearest_within(
    qs: np.ndarray, centroids: np.ndarray, radius: float, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """The nearest centroid (first on ties) if within ``radius``, else -1; and its distance."""
    if not len(centroids):
        return np.full(len(qs), -1, dtype=np.int64), np.full(len(qs), np.inf)
    d = cdist(qs, centroids, metric)
    nearest = d.argmin(axis=1)
    dist = d[np.arange(len(qs)), nearest]
    return np.where(dist <= radius, nearest, -1), dist
