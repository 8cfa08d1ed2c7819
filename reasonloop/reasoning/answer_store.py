"""Answers (and judge verdicts) persisted per question as they finish, in SQLite under the state folder. The same
rows serve as the cache (any run's records, within a TTL) and as the checkpoint a crashed run resumes from (this
run's records only, when the cache is off, until the run completes). Keys hold everything a record depends on, so
a new prompt version or alias target, model, generation parameter, strategy setting or retrieved context (text,
ids or scores) misses for exactly the records it feeds; ReAct answers, which search the index themselves, also
hold the index version; verdicts hold the judge version and the answer they judge."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonloop.reasoning.chat_api import model_identity
from reasonloop.reasoning.config import CacheConfig
from reasonloop.reasoning.llm_calls import endpoint_of
from reasonloop.reasoning.prompts import format_chunks
from reasonloop.reasoning.routing import Plan
from reasonloop.schemas import AnswerRecord, Question, RetrievedChunk, Verdict

TABLES = ("answers", "verdicts")
_PREPARED: set[tuple[str, str]] = set()
_PREPARE_LOCK = threading.Lock()
LOOKUP_BATCH = 500  # keys per query: SQLite's variable limit is 999 on old builds


def digest(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def answer_key(plan: Plan, question: Question, context: list[RetrievedChunk]) -> str:
    """sha256 of the endpoint, the model's generation parameters, the plan's identity (strategy, every prompt's
    version and content hash, strategy settings) and what the model reads (question, chunk texts, ids, scores)."""
    return digest({"endpoint": endpoint_of(plan.model), "params": model_identity(plan.model),
                   "plan": plan.identity, "question": question.question, "context": format_chunks(context)})


def verdict_key(judge_identity: str, question: Question, answer: AnswerRecord, context: list[RetrievedChunk]) -> str:
    """sha256 of the judge's identity (rubric version and text, model, parameters, thresholds) and what it reads."""
    return digest({"judge": judge_identity, "question": question.question, "reference": question.reference,
                   "answer": answer.answer, "context": format_chunks(context)})


def run_identity(config_hash: str, questions: list[Question], index_content_hash: str) -> str:
    """What a checkpoint belongs to: the same settings, question set and index version mean the same run."""
    digest = hashlib.sha256(f"{config_hash}\x00{index_content_hash}".encode())
    for question in questions:
        digest.update(question.model_dump_json().encode())
    return digest.hexdigest()[:16]


def open_record_store(state_dir: Path, cfg: CacheConfig, run: str, table: str = "answers") -> RecordStore | None:
    """The cache (enabled), else the checkpoint (checkpoint), else nothing: every record is made afresh."""
    if not cfg.enabled and not cfg.checkpoint:
        return None
    return RecordStore(state_dir / "reasoning" / "answers.sqlite", run, shared=cfg.enabled,
                       ttl_s=cfg.ttl_hours * 3600 if cfg.ttl_hours is not None else None, table=table)


@dataclass(frozen=True)
class RecordStore:
    """`shared`: reuse any run's records younger than `ttl_s` (the cache); else only `run`'s (the checkpoint).
    `table`: answers (AnswerRecord) or verdicts (Verdict)."""

    path: Path
    run: str
    shared: bool
    ttl_s: float | None = None
    table: str = "answers"

    def __post_init__(self) -> None:
        if self.table not in TABLES:
            raise ValueError(f"unknown table '{self.table}' (known: {TABLES})")

    @property
    def record_type(self) -> type[AnswerRecord] | type[Verdict]:
        return AnswerRecord if self.table == "answers" else Verdict

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self._prepare()
        with closing(sqlite3.connect(self.path, timeout=30)) as connection:
            connection.execute("PRAGMA synchronous=NORMAL")  # WAL: a power cut may lose the last answers, never corrupt
            with connection:  # one transaction: committed on success, rolled back on error
                yield connection

    def _prepare(self) -> None:
        """WAL mode (it persists in the file) and the table, once per file and table in this process: switching
        the journal mode takes an exclusive lock that two first connections racing for it would not wait for."""
        ready = (str(self.path), self.table)
        with _PREPARE_LOCK:
            if ready in _PREPARED:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(sqlite3.connect(self.path, timeout=30)) as connection:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (key TEXT PRIMARY KEY, "
                                   "run TEXT NOT NULL, created REAL NOT NULL, record TEXT NOT NULL)")
            _PREPARED.add(ready)

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        """Stored records for the keys that have one (within the TTL, or of this run)."""
        found: dict[str, Any] = {}
        oldest = time.time() - self.ttl_s if self.shared and self.ttl_s is not None else 0.0
        with self._connect() as connection:
            for start in range(0, len(keys), LOOKUP_BATCH):
                part = keys[start:start + LOOKUP_BATCH]
                sql = (f"SELECT key, record FROM {self.table} WHERE key IN ({','.join('?' * len(part))}) "
                       f"AND created >= ?" + ("" if self.shared else " AND run = ?"))
                params = [*part, oldest] + ([] if self.shared else [self.run])
                found.update({key: self.record_type.model_validate_json(record)
                              for key, record in connection.execute(sql, params)})
        return found

    def complete(self) -> None:
        """The run finished: a checkpoint (not the cache) has served its purpose, so the next run asks afresh."""
        if not self.shared:
            with self._connect() as connection:
                connection.execute(f"DELETE FROM {self.table} WHERE run = ?", (self.run,))

    def put(self, key: str, record: AnswerRecord | Verdict) -> None:
        """Persist one finished record now (a crash later loses nothing that finished)."""
        with self._connect() as connection:
            connection.execute(f"INSERT OR REPLACE INTO {self.table} VALUES (?, ?, ?, ?)",
                               (key, self.run, time.time(), record.model_dump_json()))
