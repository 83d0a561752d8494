"""The result store: one SQLite file per grid, one row per finished cell, keyed by its hash.

A cell's row is written in one transaction when the cell finishes, so a run killed at any
moment leaves only whole results; the primary key makes a second result for the same cell
impossible. Re-running a grid skips the cells whose row says ``done`` and retries the ``failed``
ones. Only the process that runs the grid writes; workers return plain values to it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from modelsteal.experiments.config import Cell

SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    spec TEXT NOT NULL,
    labels TEXT NOT NULL,
    result TEXT,
    error TEXT,
    seconds REAL,
    finished REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL,
    config TEXT NOT NULL,
    source TEXT NOT NULL
);
"""


class ResultStore:
    """SQLite-backed results of one grid (``path`` is created with its folder)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30.0)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            with db:
                yield db
        finally:
            db.close()

    def start_run(self, config_text: str, source: str) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO runs (started, config, source) VALUES (?, ?, ?)",
                (time.time(), config_text, source),
            )

    def done_keys(self) -> set[str]:
        with self._connect() as db:
            return {k for (k,) in db.execute("SELECT key FROM cells WHERE status = 'done'")}

    def put(self, cell: Cell, result: dict[str, Any], *, seconds: float) -> None:
        """Record a finished cell (replacing an earlier failure, never a success)."""
        self._write(cell, "done", json.dumps(result, default=_plain), None, seconds)

    def put_failure(self, cell: Cell, error: str, *, seconds: float) -> None:
        self._write(cell, "failed", None, error, seconds)

    def _write(self, cell: Cell, status: str, result, error, seconds: float) -> None:
        with self._connect() as db:
            row = db.execute("SELECT status, attempts FROM cells WHERE key = ?", (cell.key,))
            old = row.fetchone()
            if old is not None and old[0] == "done":
                return  # finished already (e.g. by a parallel run): keep the first result
            db.execute(
                "INSERT OR REPLACE INTO cells "
                "(key, kind, status, spec, labels, result, error, seconds, finished, attempts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    cell.key,
                    cell.kind,
                    status,
                    json.dumps(cell.spec, sort_keys=True, default=_plain),
                    json.dumps(cell.labels, sort_keys=True),
                    result,
                    error,
                    seconds,
                    time.time(),
                    1 if old is None else old[1] + 1,
                ),
            )

    def rows(self, *, status: str | None = "done") -> list[dict[str, Any]]:
        """Every stored cell as a dict: key, kind, status, spec, labels, result, error, seconds."""
        query = (
            "SELECT key, kind, status, spec, labels, result, error, seconds, attempts FROM cells"
        )
        args: tuple = ()
        if status is not None:
            query += " WHERE status = ?"
            args = (status,)
        with self._connect() as db:
            out = []
            for key, kind, st, spec, labels, result, error, seconds, attempts in db.execute(
                query + " ORDER BY finished", args
            ):
                out.append(
                    {
                        "key": key,
                        "kind": kind,
                        "status": st,
                        "spec": json.loads(spec),
                        "labels": json.loads(labels),
                        "result": json.loads(result) if result else None,
                        "error": error,
                        "seconds": seconds,
                        "attempts": attempts,
                    }
                )
            return out

    def latest_config(self) -> tuple[str, str] | None:
        with self._connect() as db:
            row = db.execute("SELECT config, source FROM runs ORDER BY id DESC LIMIT 1").fetchone()
            return None if row is None else (row[0], row[1])


def _plain(value: Any) -> Any:
    """JSON fallback: numpy scalars and arrays as Python values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)
