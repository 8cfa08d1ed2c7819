"""The spool: what the endpoint acknowledged, durable before the response leaves. Every answered request and every
piece of feedback is committed here first (SQLite, write-ahead log: a killed or restarted process loses nothing it
acknowledged) and the exporter moves them into MLflow in the background, so the request path never waits for
MLflow (a trace costs ~30 ms to write to a SQLite tracking store, more over HTTP) and nothing is dropped when MLflow
falls behind (MLflow's own asynchronous queue discards traces when it is full).

Exporters claim rows for a lease before writing them, so several processes can share one spool without exporting a
row twice; a row whose exporter died is claimed again at once when that exporter ran on this host (its process is
gone), else once its lease runs out. The MLflow trace id an export is about to write is noted first, so a retry
keeps a trace the dead exporter wrote whole and replaces one it left half-written."""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS asks (trace_id TEXT PRIMARY KEY, received_ns INTEGER NOT NULL, body TEXT NOT NULL,
                                 mlflow_trace_id TEXT, exported_ns INTEGER, claimed_ns INTEGER,
                                 attempts INTEGER NOT NULL DEFAULT 0, claimed_by TEXT);
CREATE INDEX IF NOT EXISTS asks_pending ON asks (exported_ns) WHERE exported_ns IS NULL;
CREATE TABLE IF NOT EXISTS feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, trace_id TEXT NOT NULL
                                     REFERENCES asks (trace_id), received_ns INTEGER NOT NULL, body TEXT NOT NULL,
                                     exported_ns INTEGER, claimed_ns INTEGER, attempts INTEGER NOT NULL DEFAULT 0,
                                     claimed_by TEXT);
CREATE INDEX IF NOT EXISTS feedback_pending ON feedback (exported_ns) WHERE exported_ns IS NULL;
"""
TABLES = ("asks", "feedback")


def claimant() -> str:
    """Who claims rows: this process, as `host:pid`."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Spool:
    """The endpoint's write-ahead record; safe to use from many threads (one connection per thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._db().executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # committed means on disk past a process crash
            self._local.db = db
        return db

    def release_dead(self, alive: Callable[[str, str], bool]) -> int:
        """Free the claims of exporters that are gone (`alive(host, pid)` is False), so what a killed process was
        exporting moves on now rather than after its lease; returns how many rows were freed."""
        db, freed = self._db(), 0
        for table in TABLES:
            owners = [row[0] for row in db.execute(f"SELECT DISTINCT claimed_by FROM {table} WHERE exported_ns IS "
                                                   "NULL AND claimed_by IS NOT NULL")]
            for owner in owners:
                host, _, pid = owner.rpartition(":")
                if not alive(host, pid):
                    freed += db.execute(f"UPDATE {table} SET claimed_ns = NULL, claimed_by = NULL WHERE claimed_by "
                                        "= ? AND exported_ns IS NULL", (owner,)).rowcount
        return freed

    def record_ask(self, trace_id: str, received_ns: int, body: str) -> None:
        self._db().execute("INSERT INTO asks (trace_id, received_ns, body) VALUES (?, ?, ?)",
                           (trace_id, received_ns, body))

    def knows(self, trace_id: str) -> bool:
        return self._db().execute("SELECT 1 FROM asks WHERE trace_id = ?", (trace_id,)).fetchone() is not None

    def record_feedback(self, trace_id: str, received_ns: int, body: str) -> int:
        cursor = self._db().execute("INSERT INTO feedback (trace_id, received_ns, body) VALUES (?, ?, ?)",
                                    (trace_id, received_ns, body))
        return int(cursor.lastrowid or 0)

    def _claim(self, select: str, table: str, key: str, limit: int, lease_s: float) -> list[tuple[Any, ...]]:
        """Rows of `select` (unexported, unclaimed or with an expired lease) claimed for `lease_s`, in one
        transaction; each row ends with its attempt number (1: first export)."""
        now = time.time_ns()
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            rows = db.execute(select, (now - int(lease_s * 1e9), limit)).fetchall()
            db.executemany(f"UPDATE {table} SET claimed_ns = ?, claimed_by = ?, attempts = attempts + 1 WHERE "
                           f"{key} = ?", [(now, claimant(), row[0]) for row in rows])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return [(*row[:-1], row[-1] + 1) for row in rows]

    def claim_asks(self, limit: int, lease_s: float) -> list[tuple[str, str, str | None]]:
        """(trace id, body, MLflow trace id an earlier export noted) of answered requests not yet in MLflow, oldest
        first, claimed for `lease_s`."""
        rows = self._claim("SELECT trace_id, body, mlflow_trace_id, attempts FROM asks WHERE exported_ns IS NULL AND "
                           "(claimed_ns IS NULL OR claimed_ns < ?) ORDER BY received_ns LIMIT ?", "asks", "trace_id",
                           limit, lease_s)
        return [(trace_id, body, noted) for trace_id, body, noted, _ in rows]

    def note_mlflow_id(self, trace_id: str, mlflow_trace_id: str) -> None:
        """The MLflow trace an export is about to write (so a retry finds what a cut-short write left)."""
        self._db().execute("UPDATE asks SET mlflow_trace_id = ? WHERE trace_id = ?", (mlflow_trace_id, trace_id))

    def release_asks(self, trace_ids: list[str]) -> None:
        """Give claimed answers back at once (their export failed): the next round claims them again, as a retry."""
        self._db().executemany("UPDATE asks SET claimed_ns = NULL, claimed_by = NULL WHERE trace_id = ?",
                               [(t,) for t in trace_ids])

    def ask_exported(self, trace_id: str, mlflow_trace_id: str) -> None:
        self._db().execute("UPDATE asks SET mlflow_trace_id = ?, exported_ns = ? WHERE trace_id = ?",
                           (mlflow_trace_id, time.time_ns(), trace_id))

    def claim_feedback(self, limit: int, lease_s: float) -> list[tuple[int, str, str, int]]:
        """(id, MLflow trace id, body, attempt) of feedback not yet in MLflow whose trace is there, oldest first,
        claimed for `lease_s`."""
        return self._claim("SELECT f.id, a.mlflow_trace_id, f.body, f.attempts FROM feedback f JOIN asks a ON "
                           "a.trace_id = f.trace_id WHERE f.exported_ns IS NULL AND a.exported_ns IS NOT NULL AND "
                           "(f.claimed_ns IS NULL OR f.claimed_ns < ?) ORDER BY f.id LIMIT ?", "feedback", "id", limit,
                           lease_s)

    def feedback_exported(self, feedback_id: int) -> None:
        self._db().execute("UPDATE feedback SET exported_ns = ? WHERE id = ?", (time.time_ns(), feedback_id))

    def mlflow_trace_id(self, trace_id: str) -> str | None:
        row = self._db().execute("SELECT mlflow_trace_id FROM asks WHERE trace_id = ?", (trace_id,)).fetchone()
        return row[0] if row else None

    def backlog(self) -> tuple[int, int]:
        """(answered requests, feedback) acknowledged but not yet in MLflow."""
        db = self._db()
        asks = db.execute("SELECT count(*) FROM asks WHERE exported_ns IS NULL").fetchone()[0]
        feedback = db.execute("SELECT count(*) FROM feedback WHERE exported_ns IS NULL").fetchone()[0]
        return int(asks), int(feedback)

    def totals(self) -> tuple[int, int]:
        """(answered requests, feedback) ever acknowledged."""
        db = self._db()
        return (int(db.execute("SELECT count(*) FROM asks").fetchone()[0]),
                int(db.execute("SELECT count(*) FROM feedback").fetchone()[0]))
