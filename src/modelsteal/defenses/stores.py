"""Stores for the state of stateful defenses: ordered, append-only centroid lists per class.

ModelGuard-S (:mod:`modelsteal.defenses.modelguard_s`) promises that the same clean prediction
always gets the same answer. That promise is only as good as its state, so the state lives in a
:class:`CentroidStore`:

- :class:`MemoryCentroidStore` — per-class append-only arrays in this process, behind a lock.
  Fast and thread-safe; gone when the process ends, and it refuses to be copied into another
  process (two diverging copies would answer the same query differently).
- :class:`SQLiteCentroidStore` — one SQLite file (WAL mode), durable and safe to share between
  threads and processes. Several defense configurations can share a file: every row is keyed by
  a *namespace*, the digest of the configuration that wrote it, so centroids of different
  ε / norm / precision never mix.

A store holds two kinds of rows per (namespace, class), each in insertion order:

- **centroids** — float64 vectors, stored byte for byte (never re-rounded); a centroid's *rank* is
  its position in its class's list (0, 1, 2, ...). Ranks never change: the lists only grow.
- **pins** — a vector and the rank of the centroid it was answered with. The defense writes one
  when a query lies so close to a decision boundary that float noise could flip its answer; a
  later query within the pin radius gets the pinned answer (see the defense's docstring).

The contract (:class:`CentroidStore`) has two ways in:

- ``view(namespace, label, fresh=...)`` returns a :class:`ClassView` without taking the write lock.
  It may lag behind other writers, but it is always a *prefix* of the true lists (rows are only
  appended, and they become visible in rank order). ``fresh=True`` first catches up with what other
  writers committed.
- ``exclusive(namespace)`` is a context manager for the atomic "look, decide, append" step: inside
  it no other writer (thread or process) can append to the namespace, views through the
  :class:`CentroidWriter` are complete, and appends become visible to everyone — and durable, for
  SQLite — only when the block exits without an exception. An exception rolls everything back.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from modelsteal.errors import InvalidParameterError, ModelStealError

__all__ = [
    "CentroidStore",
    "CentroidStoreError",
    "CentroidWriter",
    "ClassView",
    "MemoryCentroidStore",
    "SQLiteCentroidStore",
]

_EMPTY = np.zeros((0, 0), dtype=np.float64)
_EMPTY.setflags(write=False)
_NO_RANKS = np.zeros(0, dtype=np.int64)
_NO_RANKS.setflags(write=False)


class CentroidStoreError(ModelStealError, RuntimeError):
    """A centroid store's contents are not what this defense can use (or it could not be read)."""


@dataclass(frozen=True)
class ClassView:
    """A read-only snapshot of one class: centroids in rank order, and pins in insertion order.

    ``centroids`` is (m, C); ``pins`` is (k, C) and ``pin_ranks`` (k,) the rank each pin answers
    with. An empty class has shape (0, 0) arrays.
    """

    centroids: np.ndarray
    pins: np.ndarray
    pin_ranks: np.ndarray


EMPTY_VIEW = ClassView(_EMPTY, _EMPTY, _NO_RANKS)


@runtime_checkable
class CentroidWriter(Protocol):
    """What :meth:`CentroidStore.exclusive` yields: complete views and appends, atomically."""

    def view(self, label: int) -> ClassView:
        """The class as committed by every writer so far (not counting this block's appends)."""
        ...

    def append_centroid(self, label: int, vector: np.ndarray) -> int:
        """Append a centroid to class ``label`` and return its rank."""
        ...

    def add_pin(self, label: int, vector: np.ndarray, rank: int) -> None:
        """Record that ``vector`` (of class ``label``) is answered with centroid ``rank``."""
        ...


@runtime_checkable
class CentroidStore(Protocol):
    """Ordered, append-only centroid lists per (namespace, class). See the module docstring."""

    def open_namespace(self, namespace: str, params: Mapping[str, Any]) -> None:
        """Declare ``namespace`` and the configuration (plain values) it stands for."""
        ...

    def view(self, namespace: str, label: int, *, fresh: bool = False) -> ClassView:
        """A prefix of class ``label``'s lists; ``fresh=True`` first reads what others appended."""
        ...

    def exclusive(self, namespace: str) -> Any:
        """A context manager yielding a :class:`CentroidWriter` (one writer at a time)."""
        ...

    def counts(self, namespace: str) -> dict[int, int]:
        """The number of centroids per class (classes with none are left out), up to date."""
        ...

    def n_pins(self, namespace: str) -> int:
        """The number of pins in ``namespace``, up to date."""
        ...

    def close(self) -> None:
        """Release files and connections (a no-op for in-memory stores)."""
        ...


class _Rows:
    """An append-only float64 matrix with amortised O(1) appends.

    ``view()`` returns a read-only slice of the current buffer. Appends write past the slice (or
    into a new buffer), so a view handed out earlier never changes under its reader.
    """

    __slots__ = ("_buf", "_n")

    def __init__(self) -> None:
        self._buf: np.ndarray | None = None
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def extend(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or len(rows) == 0:
            return
        if self._buf is None:
            self._buf = np.empty((max(16, 2 * len(rows)), rows.shape[1]), dtype=np.float64)
        elif rows.shape[1] != self._buf.shape[1]:
            raise CentroidStoreError(
                f"A class holds vectors of length {self._buf.shape[1]}; got one of length "
                f"{rows.shape[1]}. A store namespace serves one model (one number of classes)."
            )
        need = self._n + len(rows)
        if need > len(self._buf):
            grown = np.empty((max(need, 2 * len(self._buf)), self._buf.shape[1]), np.float64)
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown
        self._buf[self._n : need] = rows
        self._n = need

    def view(self) -> np.ndarray:
        if self._buf is None:
            return _EMPTY
        out = self._buf[: self._n]
        out.setflags(write=False)
        return out


class _Ranks:
    """An append-only int64 vector; views handed out never change (as with :class:`_Rows`)."""

    __slots__ = ("_buf", "_n")

    def __init__(self) -> None:
        self._buf = np.empty(16, dtype=np.int64)
        self._n = 0

    def extend(self, ranks: list[int]) -> None:
        need = self._n + len(ranks)
        if need > len(self._buf):
            grown = np.empty(max(need, 2 * len(self._buf)), dtype=np.int64)
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown
        self._buf[self._n : need] = ranks
        self._n = need

    def view(self) -> np.ndarray:
        if not self._n:
            return _NO_RANKS
        out = self._buf[: self._n]
        out.setflags(write=False)
        return out


class _ClassLists:
    """Centroids, pins and pin ranks of one class.

    The snapshot is made once and handed out until the lists grow (every append goes through
    :meth:`add_centroids` or :meth:`add_pins`), so a lookup does not pay for new views.
    """

    __slots__ = ("_snapshot", "centroids", "pin_ranks", "pins")

    def __init__(self) -> None:
        self.centroids = _Rows()
        self.pins = _Rows()
        self.pin_ranks = _Ranks()
        self._snapshot: ClassView | None = None

    def add_centroids(self, rows: np.ndarray) -> None:
        self._snapshot = None
        self.centroids.extend(rows)

    def add_pins(self, rows: np.ndarray, ranks: list[int]) -> None:
        self._snapshot = None
        self.pins.extend(rows)
        self.pin_ranks.extend(ranks)

    def snapshot(self) -> ClassView:
        view = self._snapshot
        if view is None:
            view = ClassView(self.centroids.view(), self.pins.view(), self.pin_ranks.view())
            self._snapshot = view
        return view


class _Pending:
    """Appends made inside one exclusive block, applied to the lists only on success."""

    def __init__(self) -> None:
        self.centroids: dict[int, list[np.ndarray]] = {}
        self.pins: dict[int, list[tuple[np.ndarray, int]]] = {}

    def add_centroid(self, label: int, vector: np.ndarray) -> int:
        """Record a centroid; return how many this block has appended to ``label`` before it."""
        rows = self.centroids.setdefault(label, [])
        rows.append(vector)
        return len(rows) - 1

    def apply(self, lists: dict[int, _ClassLists]) -> None:
        for label, rows in self.centroids.items():
            block = rows[0][None] if len(rows) == 1 else np.stack(rows)
            lists.setdefault(label, _ClassLists()).add_centroids(block)
        for label, pins in self.pins.items():
            target = lists.setdefault(label, _ClassLists())
            target.add_pins(np.stack([v for v, _ in pins]), [r for _, r in pins])


def _as_vector(vector: np.ndarray) -> np.ndarray:
    out = np.array(vector, dtype=np.float64, copy=True).reshape(-1)
    if out.size == 0 or not np.isfinite(out).all():
        raise InvalidParameterError("A centroid must be a non-empty finite vector.")
    return out


def _check_synchronous(value: Any) -> str:
    mode = value.upper() if isinstance(value, str) else value
    if mode not in ("FULL", "NORMAL"):
        raise InvalidParameterError(
            "The 'synchronous' parameter of SQLiteCentroidStore must be one of 'FULL', 'NORMAL' "
            f"(SQLite's synchronous mode). Got {value!r} instead."
        )
    return mode


def _check_namespace(namespace: Any) -> str:
    if not isinstance(namespace, str) or not namespace:
        raise InvalidParameterError(
            f"A store namespace must be a non-empty string. Got {namespace!r} instead."
        )
    return namespace


# --------------------------------------------------------------------------------------------
# In memory
# --------------------------------------------------------------------------------------------


class MemoryCentroidStore:
    """Centroid lists in this process's memory, safe under concurrent threads.

    One lock guards every list; views are read-only slices taken under it, so readers never see a
    half-written row. Not durable: use :class:`SQLiteCentroidStore` when answers must stay the
    same across restarts or replicas.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._lists: dict[str, dict[int, _ClassLists]] = {}
        self._params: dict[str, dict[str, Any]] = {}

    def open_namespace(self, namespace: str, params: Mapping[str, Any]) -> None:
        namespace = _check_namespace(namespace)
        with self._lock:
            self._params.setdefault(namespace, dict(params))
            self._lists.setdefault(namespace, {})

    def view(self, namespace: str, label: int, *, fresh: bool = False) -> ClassView:
        with self._lock:
            lists = self._lists.get(namespace, {}).get(int(label))
            return EMPTY_VIEW if lists is None else lists.snapshot()

    @contextmanager
    def exclusive(self, namespace: str) -> Iterator[CentroidWriter]:
        namespace = _check_namespace(namespace)
        with self._lock:
            lists = self._lists.setdefault(namespace, {})
            writer = _MemoryWriter(lists)
            yield writer
            writer.pending.apply(lists)

    def counts(self, namespace: str) -> dict[int, int]:
        with self._lock:
            lists = self._lists.get(namespace, {})
            return {c: len(v.centroids) for c, v in sorted(lists.items()) if len(v.centroids)}

    def n_pins(self, namespace: str) -> int:
        with self._lock:
            return sum(len(v.pins) for v in self._lists.get(namespace, {}).values())

    def close(self) -> None:
        """Nothing to release."""

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError(
            "A MemoryCentroidStore cannot be copied or sent to another process: two copies would "
            "drift apart and answer the same query differently. Share an "
            "SQLiteCentroidStore(path) instead."
        )

    def __repr__(self) -> str:
        return f"MemoryCentroidStore(namespaces={len(self._lists)})"


class _MemoryWriter:
    def __init__(self, lists: dict[int, _ClassLists]) -> None:
        self._lists = lists
        self.pending = _Pending()

    def view(self, label: int) -> ClassView:
        lists = self._lists.get(int(label))
        return EMPTY_VIEW if lists is None else lists.snapshot()

    def append_centroid(self, label: int, vector: np.ndarray) -> int:
        label = int(label)
        committed = len(self._lists[label].centroids) if label in self._lists else 0
        return committed + self.pending.add_centroid(label, _as_vector(vector))

    def add_pin(self, label: int, vector: np.ndarray, rank: int) -> None:
        self.pending.pins.setdefault(int(label), []).append((_as_vector(vector), int(rank)))


# --------------------------------------------------------------------------------------------
# SQLite
# --------------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS centroid_namespaces (
    namespace TEXT PRIMARY KEY,
    params    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS centroids (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT    NOT NULL,
    class     INTEGER NOT NULL,
    vector    BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS centroids_by_namespace ON centroids (namespace, id);
CREATE TABLE IF NOT EXISTS centroid_pins (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT    NOT NULL,
    class     INTEGER NOT NULL,
    vector    BLOB    NOT NULL,
    rank      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS centroid_pins_by_namespace ON centroid_pins (namespace, id);
"""


class _NamespaceCache:
    """This process's copy of one namespace: a prefix (by id) of the rows on disk."""

    __slots__ = ("last_centroid", "last_pin", "lists", "loaded")

    def __init__(self) -> None:
        self.lists: dict[int, _ClassLists] = {}
        self.last_centroid = 0  # the largest centroid id in the cache
        self.last_pin = 0
        self.loaded = False


def _blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f8").tobytes()


def _unblob(blobs: list[bytes], where: str) -> np.ndarray:
    sizes = {len(b) for b in blobs}
    if len(sizes) != 1 or next(iter(sizes)) % 8 or next(iter(sizes)) == 0:
        raise CentroidStoreError(
            f"{where}: stored vectors have byte lengths {sorted(sizes)}; expected one length, a "
            "multiple of 8 (float64). The file was not written by this store, or is damaged."
        )
    return np.frombuffer(b"".join(blobs), dtype="<f8").reshape(len(blobs), -1)


class SQLiteCentroidStore:
    """Durable centroid lists in one SQLite file, shared safely by threads and processes.

    **Layout.** Three tables: ``centroid_namespaces`` (namespace digest → the configuration as
    JSON, for people reading the file), ``centroids`` and ``centroid_pins`` (``id INTEGER PRIMARY
    KEY AUTOINCREMENT``, namespace, class, float64 vector as little-endian bytes; pins also hold the
    answered rank). A class's order is its rows' id order; AUTOINCREMENT never reuses an id, so
    the order is the insertion order and ranks are stable for the life of the file.

    **Atomic decisions.** :meth:`exclusive` takes this object's lock (threads) and then
    ``BEGIN IMMEDIATE`` (processes: SQLite's single write lock), reads every row appended since the
    cache's last id, lets the caller decide and append, and ``COMMIT``\\s — so "is there a centroid
    within ε, else append" happens for one writer at a time on complete state, and the rows are on
    disk (WAL; flushed with the default ``synchronous="FULL"``) before the block exits and any
    answer that depends on them is returned. A failed block is rolled back and leaves the cache
    untouched.

    **Durability.** ``synchronous="FULL"`` (the default) flushes every commit to the disk: the
    rows survive a process crash and a power loss. ``"NORMAL"`` leaves the flush to the WAL
    checkpoints: a commit then survives a crash of the process (its pages are in the operating
    system's cache) but the last ones may be lost on power loss or an operating-system crash —
    after which a query answered just before could be answered differently. It makes a commit
    several times cheaper; choose it only where losing the machine's last moments is acceptable.

    **Cache.** Each class's centroids and pins are held in memory as numpy matrices and refreshed
    incrementally (``WHERE id > last id``), so a lookup that finds its answer in the cache does not
    touch the disk. The cache is always a *prefix* of the rows on disk: writers are serialised, a
    writer refreshes before it appends, so every committed id is larger than every id committed
    before it, and a refresh reads all rows above the last id in one read transaction. A stale
    cache can therefore only be missing rows *after* the ones it holds. What that means for each
    kind of lookup is argued where the lookup is made (the defense).

    **Processes.** Each process (and each object) has its own connection; pass the *path* to
    worker processes, or the store itself: it pickles as its path and reconnects. After a fork
    the child opens a fresh connection on first use instead of sharing the parent's.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, timeout: float = 60.0, synchronous: str = "FULL"
    ) -> None:
        if not isinstance(path, str | os.PathLike) or not os.fspath(path):
            raise InvalidParameterError(
                "The 'path' parameter of SQLiteCentroidStore must be a path to an SQLite file. "
                f"Got {path!r} instead."
            )
        self.path = os.fspath(path)
        if self.path == ":memory:" or self.path.startswith("file::memory:"):
            raise InvalidParameterError(
                "SQLiteCentroidStore needs a file: an in-memory SQLite database is neither durable "
                "nor shared. Use MemoryCentroidStore() for a store in memory."
            )
        self.timeout = float(timeout)
        self.synchronous = _check_synchronous(synchronous)
        self._init_runtime()
        with self._lock:
            self._connection()  # create the file and the schema now, so a bad path fails here

    def _init_runtime(self) -> None:
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._caches: dict[str, _NamespaceCache] = {}
        self._params: dict[str, str] = {}

    # -- connection ---------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """The connection of this process (called with the lock held)."""
        if self._pid != os.getpid():  # forked: never use the parent's connection or cache
            self._conn = None
            self._pid = os.getpid()
            self._caches = {}
        if self._conn is None:
            try:
                conn = sqlite3.connect(
                    self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
                )
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    conn.close()
                    raise CentroidStoreError(
                        f"Could not switch the centroid store {self.path!r} to SQLite's WAL "
                        f"journal (it stays in {mode!r} mode). Readers beside a writer and the "
                        "durability documented for this store assume WAL, which needs a file "
                        "system with shared memory (not most network file systems): put the "
                        "file on a local disk."
                    )
                conn.execute(f"PRAGMA synchronous={self.synchronous}")
                conn.executescript(_SCHEMA)  # idempotent; concurrent openers wait on the lock
            except sqlite3.Error as exc:
                raise CentroidStoreError(
                    f"Could not open the centroid store {self.path!r}: {exc}."
                ) from exc
            self._conn = conn
        return self._conn

    def close(self) -> None:
        """Close the connection; the next use reopens it (the cache is kept: it stays a prefix)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> SQLiteCentroidStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "timeout": self.timeout, "synchronous": self.synchronous}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self.timeout = state["timeout"]
        self.synchronous = state.get("synchronous", "FULL")
        self._init_runtime()

    def __repr__(self) -> str:
        sync = "" if self.synchronous == "FULL" else f", synchronous={self.synchronous!r}"
        return f"SQLiteCentroidStore({self.path!r}{sync})"

    # -- namespaces ---------------------------------------------------------------------------

    def open_namespace(self, namespace: str, params: Mapping[str, Any]) -> None:
        namespace = _check_namespace(namespace)
        text = json.dumps(dict(params), sort_keys=True)
        with self._lock:
            conn = self._connection()
            try:
                conn.execute(
                    "INSERT OR IGNORE INTO centroid_namespaces (namespace, params) VALUES (?, ?)",
                    (namespace, text),
                )
                row = conn.execute(
                    "SELECT params FROM centroid_namespaces WHERE namespace = ?", (namespace,)
                ).fetchone()
            except sqlite3.Error as exc:
                raise CentroidStoreError(f"{self.path}: {exc}.") from exc
            if row is not None and row[0] != text:
                raise CentroidStoreError(
                    f"{self.path}: namespace {namespace!r} was written by the configuration "
                    f"{row[0]}, not {text}. Refusing to mix their centroids."
                )
            self._params[namespace] = text

    # -- reading ------------------------------------------------------------------------------

    def _cache(self, namespace: str) -> _NamespaceCache:
        cache = self._caches.get(namespace)
        if cache is None:
            cache = self._caches[namespace] = _NamespaceCache()
        return cache

    def _refresh(self, namespace: str, *, in_transaction: bool) -> _NamespaceCache:
        """Append to the cache every row committed since its last ids (lock held)."""
        conn = self._connection()
        cache = self._cache(namespace)
        try:
            if not in_transaction:
                conn.execute("BEGIN")  # one read snapshot: pins never point past the centroids
            try:
                centroids = conn.execute(
                    "SELECT id, class, vector FROM centroids WHERE namespace = ? AND id > ? "
                    "ORDER BY id",
                    (namespace, cache.last_centroid),
                ).fetchall()
                pins = conn.execute(
                    "SELECT id, class, vector, rank FROM centroid_pins "
                    "WHERE namespace = ? AND id > ? ORDER BY id",
                    (namespace, cache.last_pin),
                ).fetchall()
            finally:
                if not in_transaction:
                    conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise CentroidStoreError(
                f"Could not read the centroid store {self.path}: {exc}."
            ) from exc
        where = f"{self.path} [{namespace}]"
        for label in sorted({row[1] for row in centroids}):
            rows = [r[2] for r in centroids if r[1] == label]
            cache.lists.setdefault(label, _ClassLists()).add_centroids(_unblob(rows, where))
        for label in sorted({row[1] for row in pins}):
            rows = [r for r in pins if r[1] == label]
            lists = cache.lists.setdefault(label, _ClassLists())
            lists.add_pins(_unblob([r[2] for r in rows], where), [int(r[3]) for r in rows])
        if centroids:
            cache.last_centroid = centroids[-1][0]
        if pins:
            cache.last_pin = pins[-1][0]
        cache.loaded = True
        return cache

    def view(self, namespace: str, label: int, *, fresh: bool = False) -> ClassView:
        with self._lock:
            cache = self._caches.get(namespace)
            if fresh or cache is None or not cache.loaded or self._pid != os.getpid():
                cache = self._refresh(namespace, in_transaction=False)
            lists = cache.lists.get(int(label))
            return EMPTY_VIEW if lists is None else lists.snapshot()

    def counts(self, namespace: str) -> dict[int, int]:
        with self._lock:
            cache = self._refresh(namespace, in_transaction=False)
            return {c: len(v.centroids) for c, v in sorted(cache.lists.items()) if len(v.centroids)}

    def n_pins(self, namespace: str) -> int:
        with self._lock:
            cache = self._refresh(namespace, in_transaction=False)
            return sum(len(v.pins) for v in cache.lists.values())

    # -- writing ------------------------------------------------------------------------------

    @contextmanager
    def exclusive(self, namespace: str) -> Iterator[CentroidWriter]:
        namespace = _check_namespace(namespace)
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")  # waits (up to `timeout`) for other writers
            except sqlite3.Error as exc:
                raise CentroidStoreError(
                    f"Could not lock the centroid store {self.path}: {exc}."
                ) from exc
            try:
                cache = self._refresh(namespace, in_transaction=True)
                writer = _SQLiteWriter(conn, namespace, cache)
                yield writer
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            # Committed, with the write lock held until now: the new rows carry the largest ids
            # in the namespace, so appending them keeps the cache a prefix.
            writer.pending.apply(cache.lists)
            if writer.last_centroid:
                cache.last_centroid = writer.last_centroid
            if writer.last_pin:
                cache.last_pin = writer.last_pin


class _SQLiteWriter:
    def __init__(self, conn: sqlite3.Connection, namespace: str, cache: _NamespaceCache) -> None:
        self._conn = conn
        self._namespace = namespace
        self._cache = cache
        self.pending = _Pending()
        self.last_centroid = 0
        self.last_pin = 0

    def view(self, label: int) -> ClassView:
        lists = self._cache.lists.get(int(label))
        return EMPTY_VIEW if lists is None else lists.snapshot()

    def append_centroid(self, label: int, vector: np.ndarray) -> int:
        label, vector = int(label), _as_vector(vector)
        cur = self._conn.execute(
            "INSERT INTO centroids (namespace, class, vector) VALUES (?, ?, ?)",
            (self._namespace, label, _blob(vector)),
        )
        self.last_centroid = int(cur.lastrowid)
        lists = self._cache.lists.get(label)
        committed = 0 if lists is None else len(lists.centroids)
        return committed + self.pending.add_centroid(label, vector)

    def add_pin(self, label: int, vector: np.ndarray, rank: int) -> None:
        label, vector = int(label), _as_vector(vector)
        cur = self._conn.execute(
            "INSERT INTO centroid_pins (namespace, class, vector, rank) VALUES (?, ?, ?, ?)",
            (self._namespace, label, _blob(vector), int(rank)),
        )
        self.last_pin = int(cur.lastrowid)
        self.pending.pins.setdefault(label, []).append((vector, int(rank)))
