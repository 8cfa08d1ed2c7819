"""Versioned indexes: every change builds a new Chroma collection; a pointer file names the serving one.

    <state>/index/<collection>/pointer.json       {"current": 3, "kept": [1, 2, 3]}
    <state>/index/<collection>/manifests/v0003.json  the version's identity: collection, content hash, encoder, counts
    <state>/index/<collection>/catalogs/v0003.sqlite  its files (size, mtime, sha256), documents and chunk ids
    <state>/index/<collection>/lexical/v0003/        its BM25 index (memory-mapped when read)
    <state>/index/<collection>/.lock              held by the one reindex allowed at a time

The pointer is replaced atomically (write to a temporary file, fsync, rename) and only after the new
collection is complete and verified, so a reader sees the old version or the new one, never a half-built
one; a reindex killed at any point leaves the pointer as it was.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, model_validator

from reasonloop.errors import InputError, ReasonloopError
from reasonloop.retrieval.catalog import Catalog
from reasonloop.retrieval.embeddings import encoder_identity


class Manifest(BaseModel):
    """What one index version holds; its `content_hash` identifies the version's content. The per-document entries
    are in the version's catalog (catalog.py), on disk, so a manifest stays small at any corpus size."""

    version: int
    collection: str
    created_at: str
    content_hash: str
    embedding_model: str
    embedding_sha256: str
    embedding_backend: str = "torch"  # versions built before backends existed were torch's
    chunking: dict[str, bool | int | str]
    reader: str = Field(default="", description="what read the corpus (reader_identity): another one re-reads "
                        "every file instead of trusting the catalog's file states")
    n_documents: int
    n_chunks: int

    @model_validator(mode="before")
    @classmethod
    def _counts_of_older_manifests(cls, data: Any) -> Any:
        """Manifests written before catalogs listed their documents inline: keep the counts (such a version has no
        catalog, so the next reindex reads and embeds the corpus in full)."""
        if isinstance(data, dict) and "documents" in data:
            documents = data.pop("documents")
            data = {"n_documents": len(documents),
                    "n_chunks": sum(len(d["chunk_ids"]) for d in documents.values()), **data}
        return data

    @property
    def ref(self) -> str:
        return f"v{self.version}@{self.content_hash[:12]}"

    @property
    def encoder(self) -> str:
        """Which vectors this version holds: model, backend and weights (vectors of two encoders never mix)."""
        return encoder_identity(self.embedding_model, self.embedding_backend, self.embedding_sha256)


class Pointer(BaseModel):
    current: int
    kept: list[int] = Field(default_factory=list)


PLAN_EXAMPLES = 100  # document ids a plan lists per kind (it counts them all): a plan stays small at any scale


class IndexPlan(BaseModel):
    """What a reindex changed against the serving version: documents counted by kind (the first ids of each kind
    listed), and files skipped unread because their size and mtime, or bytes, matched the catalog."""

    added: list[str] = Field(default_factory=list)
    changed: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    n_added: int = 0
    n_changed: int = 0
    n_removed: int = 0
    n_unchanged: int = 0
    files_read: int = 0
    files_skipped: int = 0

    @property
    def is_noop(self) -> bool:
        return not (self.n_added or self.n_changed or self.n_removed)

    def count(self, added: list[str], changed: list[str]) -> None:
        self.n_added += len(added)
        self.n_changed += len(changed)
        self.added.extend(added[:PLAN_EXAMPLES - len(self.added)])
        self.changed.extend(changed[:PLAN_EXAMPLES - len(self.changed)])

    def merge(self, batch: IndexPlan) -> None:
        """Add a batch's plan (its listed ids stand for its counts)."""
        self.count(batch.added, batch.changed)
        self.n_added += batch.n_added - len(batch.added)
        self.n_changed += batch.n_changed - len(batch.changed)
        self.n_unchanged += batch.n_unchanged
        self.files_read += batch.files_read
        self.files_skipped += batch.files_skipped


class IndexBusyError(ReasonloopError):
    """Another reindex holds the lock."""


def version_collection(base: str, version: int) -> str:
    return f"{base}-v{version:04d}"


def version_name(version: int) -> str:
    return f"v{version:04d}"


class IndexStore:
    """The pointer, manifests and lock of one collection's versions under the state folder."""

    def __init__(self, state_dir: Path, collection: str) -> None:
        self.base = collection
        self.root = state_dir / "index" / collection
        self.manifests = self.root / "manifests"

    def lexical_dir(self, version: int) -> Path:
        return self.root / "lexical" / version_name(version)

    def catalog_path(self, version: int) -> Path:
        return self.root / "catalogs" / f"{version_name(version)}.sqlite"

    def catalog(self, manifest: Manifest) -> Catalog | None:
        """The catalog of a published version (None for one built before catalogs)."""
        return Catalog.open(self.catalog_path(manifest.version))

    @property
    def pointer_path(self) -> Path:
        return self.root / "pointer.json"

    def pointer(self) -> Pointer | None:
        path = self.pointer_path
        return Pointer.model_validate_json(path.read_text(encoding="utf-8")) if path.is_file() else None

    def manifest(self, version: int) -> Manifest:
        path = self.manifests / f"{version_name(version)}.json"
        if not path.is_file():
            raise InputError(f"index version {version} has no manifest (was it pruned?)", path=path)
        return Manifest.model_validate_json(path.read_text(encoding="utf-8"))

    def current(self) -> Manifest | None:
        pointer = self.pointer()
        return self.manifest(pointer.current) if pointer else None

    def require_current(self) -> Manifest:
        manifest = self.current()
        if manifest is None:
            raise InputError(f"there is no index '{self.base}' yet: run `reasonloop reindex` first")
        return manifest

    def next_version(self) -> int:
        """One past the highest version ever started, so an abandoned half-built version is never reused."""
        seen = [int(p.stem[1:]) for p in self.manifests.glob("v*.json")] if self.manifests.is_dir() else []
        pointer = self.pointer()
        started = int((self.root / "last_started").read_text()) if (self.root / "last_started").is_file() else 0
        return max([0, started, *seen, *(pointer.kept if pointer else [])]) + 1

    def mark_started(self, version: int) -> None:
        write_atomic(self.root / "last_started", str(version))

    def publish(self, manifest: Manifest, keep: int) -> tuple[Pointer, list[int]]:
        """Write the manifest, then switch the pointer to it; returns the pointer and the versions to drop."""
        write_atomic(self.manifests / f"{version_name(manifest.version)}.json", manifest.model_dump_json(indent=1))
        previous = self.pointer()
        history = [v for v in (previous.kept if previous else []) if v != manifest.version] + [manifest.version]
        pointer = Pointer(current=manifest.version, kept=history[-keep:])
        write_atomic(self.pointer_path, pointer.model_dump_json())
        return pointer, history[:-keep]

    def rollback(self, version: int | None = None) -> Pointer:
        """Point back at an older kept version (default: the one before the current)."""
        pointer = self.pointer()
        if pointer is None:
            raise InputError(f"there is no index '{self.base}' to roll back")
        older = [v for v in pointer.kept if v != pointer.current]
        target = version if version is not None else (older[-1] if older else None)
        if target is None or target not in pointer.kept:
            raise InputError(f"cannot roll back to {target}: kept versions are {pointer.kept} "
                             f"(current {pointer.current})")
        self.manifest(target)  # must exist
        moved = Pointer(current=target, kept=pointer.kept)
        write_atomic(self.pointer_path, moved.model_dump_json())
        return moved

    def forget(self, versions: list[int]) -> None:
        for version in versions:
            (self.manifests / f"{version_name(version)}.json").unlink(missing_ok=True)
            shutil.rmtree(self.lexical_dir(version), ignore_errors=True)
            self.catalog_path(version).unlink(missing_ok=True)

    @contextmanager
    def lock(self, wait_s: float) -> Iterator[None]:
        """Exclusive reindex lock; waits up to `wait_s`, then says who to wait for."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a+") as handle:
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        handle.seek(0)
                        holder = handle.read().strip() or "another process"
                        raise IndexBusyError(f"another reindex of '{self.base}' is running ({holder}); wait for it "
                                             f"to finish or raise index.lock_wait_s") from None
                    time.sleep(0.2)
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} since {datetime.now(UTC).isoformat(timespec='seconds')}")
            handle.flush()
            try:
                yield
            finally:
                handle.truncate(0)
                fcntl.flock(handle, fcntl.LOCK_UN)


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` so readers see the old or the new content, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
