"""Answers persisted per question as they finish, in SQLite under the state folder. The same rows serve as the
reasoning cache (any run's answers, within a TTL) and as the checkpoint a crashed run resumes from (this run's
answers only, when the cache is off, until the run completes). Keys hold everything an answer depends on, so a
new prompt version, model, generation parameter or retrieved context (text, ids or scores) misses."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from langchain_core.language_models import BaseChatModel

from reasonloop.llm_calls import endpoint_of
from reasonloop.prompts import PromptTemplate, format_chunks
from reasonloop.schemas import AnswerRecord, Question, RetrievedChunk
from reasonloop.settings import CacheConfig

SCHEMA = ("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, run TEXT NOT NULL, created REAL NOT NULL, "
          "record TEXT NOT NULL)")
LOOKUP_BATCH = 500  # keys per query: SQLite's variable limit is 999 on old builds


def answer_key(model: BaseChatModel, prompt: PromptTemplate, question: Question,
               context: list[RetrievedChunk], strategy: str = "") -> str:
    """sha256 of the endpoint, the model's generation parameters, the strategy, the prompt version and the exact
    rendered prompt (question, chunk texts, ids and scores): whatever the model would see differently misses."""
    system, user = prompt.render(question=question.question, context=format_chunks(context))
    identity = {"endpoint": endpoint_of(model), "params": model._identifying_params, "strategy": strategy,
                "prompt": prompt.ref, "system": system, "user": user}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def run_identity(config_hash: str, questions: list[Question], index_content_hash: str) -> str:
    """What a checkpoint belongs to: the same settings, question set and index version mean the same run."""
    digest = hashlib.sha256(f"{config_hash}\x00{index_content_hash}".encode())
    for question in questions:
        digest.update(question.model_dump_json().encode())
    return digest.hexdigest()[:16]


def open_answer_store(state_dir: Path, cfg: CacheConfig, run: str) -> AnswerStore | None:
    """The cache (enabled), else the checkpoint (checkpoint), else nothing: every answer is asked afresh."""
    if not cfg.enabled and not cfg.checkpoint:
        return None
    return AnswerStore(state_dir / "reasoning" / "answers.sqlite", run, shared=cfg.enabled,
                       ttl_s=cfg.ttl_hours * 3600 if cfg.ttl_hours is not None else None)


@dataclass(frozen=True)
class AnswerStore:
    """`shared`: reuse any run's answers younger than `ttl_s` (the cache); else only `run`'s (the checkpoint)."""

    path: Path
    run: str
    shared: bool
    ttl_s: float | None = None

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=30)) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")  # WAL: a power cut may lose the last answers, never corrupt
            connection.execute(SCHEMA)
            with connection:  # one transaction: committed on success, rolled back on error
                yield connection

    def get_many(self, keys: list[str]) -> dict[str, AnswerRecord]:
        """Stored answers for the keys that have one (within the TTL, or of this run)."""
        found: dict[str, AnswerRecord] = {}
        oldest = time.time() - self.ttl_s if self.shared and self.ttl_s is not None else 0.0
        with self._connect() as connection:
            for start in range(0, len(keys), LOOKUP_BATCH):
                part = keys[start:start + LOOKUP_BATCH]
                sql = (f"SELECT key, record FROM answers WHERE key IN ({','.join('?' * len(part))}) "
                       f"AND created >= ?" + ("" if self.shared else " AND run = ?"))
                params = [*part, oldest] + ([] if self.shared else [self.run])
                found.update({key: AnswerRecord.model_validate_json(record)
                              for key, record in connection.execute(sql, params)})
        return found

    def complete(self) -> None:
        """The run finished: a checkpoint (not the cache) has served its purpose, so the next run asks afresh."""
        if not self.shared:
            with self._connect() as connection:
                connection.execute("DELETE FROM answers WHERE run = ?", (self.run,))

    def put(self, key: str, record: AnswerRecord) -> None:
        """Persist one finished answer now (a crash later loses nothing that finished)."""
        with self._connect() as connection:
            connection.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?)",
                               (key, self.run, time.time(), record.model_dump_json()))
