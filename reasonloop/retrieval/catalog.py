"""The catalog of one index version: the files it read (size, mtime, sha256), the documents each gave (content hash,
chunk ids), the inputs it refused and the documents flagged as injection suspects, in SQLite beside the manifest.

On disk, not in memory: a million chunks' catalog is written and read a few rows at a time, and the next reindex
compares each file's size and mtime with it without opening the file. Rows keep the order they were written in
(corpus path order), which is the order the lexical index and the sample checks read them back in.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from reasonloop.schemas import Reject

SCHEMA = """
CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL);
CREATE TABLE documents (doc_id TEXT PRIMARY KEY, path TEXT NOT NULL, content_hash TEXT NOT NULL,
                        chunk_ids TEXT NOT NULL, n_chunks INTEGER NOT NULL);
CREATE INDEX documents_by_path ON documents(path);
CREATE TABLE rejects (path TEXT NOT NULL, line INTEGER, reason TEXT NOT NULL);
CREATE INDEX rejects_by_path ON rejects(path);
CREATE TABLE flagged (doc_id TEXT PRIMARY KEY, path TEXT NOT NULL);
CREATE INDEX flagged_by_path ON flagged(path);
"""
DOCUMENT_ROWS = "SELECT doc_id, path, content_hash, chunk_ids FROM documents"
REJECT_ROWS = "SELECT path, line, reason FROM rejects"


class FileState(BaseModel):
    """What says a corpus file is unchanged: same size and mtime, or failing that, the same bytes."""

    path: str  # relative to the corpus root
    size: int
    mtime_ns: int
    sha256: str


class DocRow(BaseModel):
    doc_id: str
    path: str
    content_hash: str
    chunk_ids: list[str]


class Catalog:
    """One version's catalog file. `create` starts an empty one (a build in progress), `open` reads a finished one."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path, self.db = path, connection

    @classmethod
    def create(cls, path: Path) -> Catalog:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)  # a build killed before its version was published left it half-written
        db = sqlite3.connect(path, check_same_thread=False)
        db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + SCHEMA)  # fsync'd once, in `finish`
        return cls(path, db)

    @classmethod
    def open(cls, path: Path) -> Catalog | None:
        """The catalog of a published version, or None for a version built before catalogs existed."""
        if not path.is_file():
            return None
        return cls(path, sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False))

    def close(self) -> None:
        self.db.close()

    def finish(self) -> None:
        """Commit and make the file durable before a manifest points at it."""
        self.db.commit()
        self.db.close()
        with self.path.open("rb") as handle:
            os.fsync(handle.fileno())

    def file_states(self) -> dict[str, FileState]:
        rows = self.db.execute("SELECT path, size, mtime_ns, sha256 FROM files")
        return {r[0]: FileState(path=r[0], size=r[1], mtime_ns=r[2], sha256=r[3]) for r in rows}

    def add_file(self, state: FileState) -> None:
        self.db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)",
                        (state.path, state.size, state.mtime_ns, state.sha256))

    def update_file_states(self, states: list[FileState]) -> None:
        """Record new mtimes of files whose bytes did not change, so the next run skips them without hashing."""
        if states:
            writable = sqlite3.connect(self.path)
            with writable:
                writable.executemany("UPDATE files SET size = ?, mtime_ns = ?, sha256 = ? WHERE path = ?",
                                     [(s.size, s.mtime_ns, s.sha256, s.path) for s in states])
            writable.close()

    def add_documents(self, rows: list[DocRow]) -> None:
        self.db.executemany("INSERT INTO documents VALUES (?, ?, ?, ?, ?)",
                            [(r.doc_id, r.path, r.content_hash, json.dumps(r.chunk_ids), len(r.chunk_ids))
                             for r in rows])

    def add_rejects(self, rejects: list[Reject]) -> None:
        self.db.executemany("INSERT INTO rejects VALUES (?, ?, ?)", [(r.source, r.line, r.reason) for r in rejects])

    def add_flagged(self, flagged: list[tuple[str, str]]) -> None:
        self.db.executemany("INSERT INTO flagged VALUES (?, ?)", flagged)

    def present(self, doc_ids: list[str]) -> set[str]:
        """Which of `doc_ids` this catalog already holds."""
        return {r[0] for r in self._with_ids("SELECT doc_id FROM documents", doc_ids)}

    def documents(self, doc_ids: list[str]) -> dict[str, DocRow]:
        return {r[0]: _doc_row(r) for r in self._with_ids(DOCUMENT_ROWS, doc_ids)}

    def _with_ids(self, select: str, doc_ids: list[str]) -> Iterator[tuple[str, ...]]:
        """`select`'s rows whose doc_id is one of `doc_ids`, asked 500 at a time (SQLite's bound on parameters)."""
        for start in range(0, len(doc_ids), 500):
            part = doc_ids[start:start + 500]
            yield from self.db.execute(f"{select} WHERE doc_id IN ({','.join('?' * len(part))})", part)

    def documents_of(self, path: str) -> list[DocRow]:
        return [_doc_row(r) for r in self.db.execute(f"{DOCUMENT_ROWS} WHERE path = ? ORDER BY rowid", (path,))]

    def rejects_of(self, path: str) -> list[Reject]:
        return [_reject(r) for r in self.db.execute(f"{REJECT_ROWS} WHERE path = ? ORDER BY rowid", (path,))]

    def flagged_of(self, path: str) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT doc_id FROM flagged WHERE path = ? ORDER BY rowid", (path,))]

    def all_rejects(self) -> list[Reject]:
        return [_reject(r) for r in self.db.execute(f"{REJECT_ROWS} ORDER BY rowid")]

    def all_flagged(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT doc_id FROM flagged ORDER BY rowid")]

    def missing_from(self, newer: Catalog, examples: int) -> tuple[int, list[str]]:
        """How many documents this catalog holds and `newer` does not (removed since), and the first ids of them."""
        newer.db.commit()
        self.db.execute("ATTACH DATABASE ? AS newer", (f"file:{newer.path}?mode=ro",))
        try:
            gone = "SELECT doc_id FROM documents EXCEPT SELECT doc_id FROM newer.documents"
            count = self.db.execute(f"SELECT COUNT(*) FROM ({gone})").fetchone()[0]
            return int(count), [r[0] for r in self.db.execute(f"{gone} ORDER BY 1 LIMIT ?", (examples,))]
        finally:
            self.db.execute("DETACH DATABASE newer")

    def counts(self) -> tuple[int, int]:
        """(documents, chunks)."""
        n_docs, n_chunks = self.db.execute("SELECT COUNT(*), COALESCE(SUM(n_chunks), 0) FROM documents").fetchone()
        return int(n_docs), int(n_chunks)

    def chunk_ids(self) -> Iterator[str]:
        """Every chunk id in corpus order, streamed."""
        for (ids,) in self.db.execute("SELECT chunk_ids FROM documents ORDER BY rowid"):
            yield from json.loads(ids)

    def content_hash(self) -> str:
        """The version's content identity: doc ids, content hashes and chunk ids, in id order."""
        digest = hashlib.sha256()
        for doc_id, content, ids in self.db.execute("SELECT doc_id, content_hash, chunk_ids FROM documents "
                                                    "ORDER BY doc_id"):
            digest.update(f"{doc_id}\x00{content}\x00{','.join(json.loads(ids))}\n".encode())
        return digest.hexdigest()


def _doc_row(row: tuple[str, str, str, str]) -> DocRow:
    return DocRow(doc_id=row[0], path=row[1], content_hash=row[2], chunk_ids=json.loads(row[3]))


def _reject(row: tuple[str, int | None, str]) -> Reject:
    return Reject(source=row[0], line=row[1], reason=row[2])
