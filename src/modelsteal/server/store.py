"""The server's durable state: API keys, row quotas, reservations and the query log (SQLite, WAL).

One file holds four tables:

- ``api_keys``: id, name, salted hash of the secret, quota (rows, or NULL for none), ``used``
  (rows reserved or answered), ``answered`` rows, ``requests`` answered, created / revoked times.
- ``reservations``: rows taken from a key's quota for a request that has not been answered yet.
- ``query_log``: one row per answered request: key id, time, endpoint, number of rows, the SHA-256
  of the input batch (float32, C order, with its shape), the per-row SHA-256 digests, and the
  response (float64 bytes, exact) with its shape.
- ``store_meta``: the schema version.

**Ordering and what a crash leaves behind.** A request goes through three transactions:

1. :meth:`StateStore.reserve` — ``UPDATE api_keys SET used = used + n WHERE id = ? AND revoked IS
   NULL AND (quota IS NULL OR used + n <= quota)`` and ``INSERT INTO reservations`` in one
   ``BEGIN IMMEDIATE`` transaction. SQLite has one writer at a time, so concurrent requests
   (threads or processes) can never spend more than the quota: the check and the increment are
   one statement.
2. The defense computes its answer; a stateful defense commits the state that answer depends on
   in its own store (ModelGuard-S: centroids and pins) before it returns.
3. :meth:`StateStore.finish` — ``INSERT INTO query_log``, ``DELETE FROM reservations``, bump the
   key's ``answered`` and ``requests``, in one transaction. Only after this commit is the response
   sent.

If the process dies (SIGKILL, power loss with ``synchronous=FULL``) before step 3 commits, the
answer was never sent, and the reservation is still in the table: :meth:`StateStore.recover`,
run when the server opens the file, gives those rows back to their keys. State that step 2
committed stays: a restarted server answers the same query with the same answer, which is what
the client would have received. If it dies after step 3 but before the response reaches the
client, the query is logged and counted but the client saw an error; asking again gets the same
answer (and is counted again). Nothing is ever answered without being logged and counted.

``recover`` assumes one server process per state file (``modelsteal serve`` runs one worker):
reservations of a second live process on the same file would be released too.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    salt BLOB NOT NULL,
    hash BLOB NOT NULL,
    quota INTEGER,
    used INTEGER NOT NULL DEFAULT 0,
    answered INTEGER NOT NULL DEFAULT 0,
    requests INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    revoked REAL,
    CHECK (quota IS NULL OR used <= quota),
    CHECK (used >= 0)
);
CREATE TABLE IF NOT EXISTS reservations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id TEXT NOT NULL,
    rows INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS query_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id TEXT NOT NULL,
    time REAL NOT NULL,
    endpoint TEXT NOT NULL,
    rows INTEGER NOT NULL,
    input_digest TEXT NOT NULL,
    row_digests BLOB NOT NULL,
    response BLOB,
    response_shape TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS query_log_key ON query_log (key_id);
CREATE INDEX IF NOT EXISTS query_log_digest ON query_log (input_digest);
"""


@dataclass(frozen=True)
class KeyRecord:
    """One API key as stored (never the secret)."""

    id: str
    name: str
    quota: int | None
    used: int
    answered: int
    requests: int
    created: float
    revoked: float | None

    @property
    def remaining(self) -> int | None:
        return None if self.quota is None else self.quota - self.used


@dataclass(frozen=True)
class LogEntry:
    """One answered request from the query log."""

    id: int
    key_id: str
    time: float
    endpoint: str
    rows: int
    input_digest: str
    row_digests: list[str]
    response: np.ndarray | None


class ReserveRefused(Exception):
    """A reservation was refused: ``reason`` is ``"unknown"``, ``"revoked"`` or ``"quota"``."""

    def __init__(self, reason: Literal["unknown", "revoked", "quota"], key: KeyRecord | None):
        self.reason = reason
        self.key = key
        super().__init__(reason)


def input_digest(x: np.ndarray) -> str:
    """SHA-256 of a batch as the model sees it: float32, C order, prefixed by its shape."""
    arr = np.ascontiguousarray(x, dtype=np.float32)
    h = hashlib.sha256(repr(tuple(arr.shape)).encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def row_digests(x: np.ndarray) -> bytes:
    """The 32-byte SHA-256 of each row (float32, C order), concatenated."""
    arr = np.ascontiguousarray(x, dtype=np.float32).reshape(len(x), -1)
    return b"".join(hashlib.sha256(row.tobytes()).digest() for row in arr)


_KEY_COLUMNS = "id, name, quota, used, answered, requests, created, revoked"


class StateStore:
    """The server's SQLite file. Thread-safe: one connection behind a lock (SQLite has one writer
    at a time anyway); several processes may open the same file (WAL)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["NORMAL", "FULL"] = "FULL",
        timeout: float = 30.0,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            self.path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"PRAGMA synchronous={synchronous}")
        with self._lock:
            self._conn.executescript(_SCHEMA)  # idempotent; commits on its own
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO store_meta (key, value) VALUES ('schema', ?)",
                (str(SCHEMA_VERSION),),
            )

    # -- plumbing -----------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            if conn.in_transaction:
                conn.execute("COMMIT")

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def ping(self) -> bool:
        """True if the file answers a query."""
        return self._read("SELECT 1") == [(1,)]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- keys ---------------------------------------------------------------------------------

    def insert_key(
        self, *, key_id: str, name: str, salt: bytes, digest: bytes, quota: int | None
    ) -> KeyRecord:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO api_keys (id, name, salt, hash, quota, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key_id, name, salt, digest, quota, time.time()),
            )
        record = self.get_key(key_id)
        assert record is not None
        return record

    def get_key(self, key_id: str) -> KeyRecord | None:
        rows = self._read(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,))
        return KeyRecord(*rows[0]) if rows else None

    def key_secret(self, key_id: str) -> tuple[bytes, bytes, KeyRecord] | None:
        """(salt, hash, record) of a key, for verification."""
        rows = self._read(
            f"SELECT salt, hash, {_KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)
        )
        if not rows:
            return None
        salt, digest, *rest = rows[0]
        return bytes(salt), bytes(digest), KeyRecord(*rest)

    def list_keys(self) -> list[KeyRecord]:
        return [
            KeyRecord(*r)
            for r in self._read(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created")
        ]

    def find_keys(self, id_or_name: str) -> list[KeyRecord]:
        rows = self._read(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ? OR name = ?",
            (id_or_name, id_or_name),
        )
        return [KeyRecord(*r) for r in rows]

    def revoke_key(self, key_id: str) -> bool:
        """Revoke a key; False if it was unknown or already revoked."""
        with self._transaction() as conn:
            cur = conn.execute(
                "UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL",
                (time.time(), key_id),
            )
            return cur.rowcount == 1

    # -- quota --------------------------------------------------------------------------------

    def reserve(self, key_id: str, rows: int) -> int:
        """Take ``rows`` from the key's quota atomically; return the reservation id.

        Raises :class:`ReserveRefused` (nothing taken) when the key is unknown, revoked, or has
        fewer than ``rows`` rows left.
        """
        with self._transaction() as conn:
            cur = conn.execute(
                "UPDATE api_keys SET used = used + ? WHERE id = ? AND revoked IS NULL "
                "AND (quota IS NULL OR used + ? <= quota)",
                (rows, key_id, rows),
            )
            if cur.rowcount == 1:
                cur = conn.execute(
                    "INSERT INTO reservations (key_id, rows, created) VALUES (?, ?, ?)",
                    (key_id, rows, time.time()),
                )
                return int(cur.lastrowid)
            row = conn.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)
            ).fetchone()
        if row is None:
            raise ReserveRefused("unknown", None)
        key = KeyRecord(*row)
        raise ReserveRefused("revoked" if key.revoked is not None else "quota", key)

    def release(self, reservation: int) -> None:
        """Give a reservation's rows back (the request was not answered)."""
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT key_id, rows FROM reservations WHERE id = ?", (reservation,)
            ).fetchone()
            if row is None:
                return
            conn.execute("DELETE FROM reservations WHERE id = ?", (reservation,))
            conn.execute("UPDATE api_keys SET used = used - ? WHERE id = ?", (row[1], row[0]))

    def finish(
        self,
        reservation: int,
        *,
        key_id: str,
        endpoint: str,
        x: np.ndarray,
        response: np.ndarray,
        keep_response: bool = True,
    ) -> None:
        """Log an answered request and settle its reservation, in one transaction."""
        digest = input_digest(x)
        rows_blob = row_digests(x)
        resp = np.ascontiguousarray(response, dtype=np.float64)
        blob = resp.tobytes() if keep_response else None
        shape = ",".join(map(str, resp.shape))
        n = len(x)
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO query_log (key_id, time, endpoint, rows, input_digest, row_digests, "
                "response, response_shape) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key_id, time.time(), endpoint, n, digest, rows_blob, blob, shape),
            )
            cur = conn.execute("DELETE FROM reservations WHERE id = ?", (reservation,))
            if cur.rowcount != 1:
                raise RuntimeError(f"Reservation {reservation} vanished before it was settled.")
            conn.execute(
                "UPDATE api_keys SET answered = answered + ?, requests = requests + 1 WHERE id = ?",
                (n, key_id),
            )

    def recover(self) -> int:
        """Give back the rows of reservations left by a process that died; return how many."""
        with self._transaction() as conn:
            rows = conn.execute("SELECT key_id, SUM(rows) FROM reservations GROUP BY key_id")
            pending = rows.fetchall()
            for key_id, n in pending:
                conn.execute("UPDATE api_keys SET used = used - ? WHERE id = ?", (n, key_id))
            conn.execute("DELETE FROM reservations")
        total = sum(int(n) for _, n in pending)
        if total:
            log.warning("released %d reserved rows of requests that were never answered", total)
        return total

    # -- the query log ------------------------------------------------------------------------

    def log_entries(self, *, key_id: str | None = None) -> list[LogEntry]:
        sql = (
            "SELECT id, key_id, time, endpoint, rows, input_digest, row_digests, response, "
            "response_shape FROM query_log"
        )
        args: tuple = ()
        if key_id is not None:
            sql += " WHERE key_id = ?"
            args = (key_id,)
        out = []
        for row in self._read(sql + " ORDER BY id", args):
            rid, kid, t, endpoint, n, digest, rd, resp, shape = row
            array = None
            if resp is not None:
                dims = tuple(int(s) for s in shape.split(",") if s)
                array = np.frombuffer(resp, dtype=np.float64).reshape(dims)
            digests = [bytes(rd[i : i + 32]).hex() for i in range(0, len(rd), 32)]
            out.append(LogEntry(rid, kid, t, endpoint, n, digest, digests, array))
        return out

    def log_count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM query_log")[0][0])
