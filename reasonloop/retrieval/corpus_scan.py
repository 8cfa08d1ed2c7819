"""Which corpus files a reindex must read, and in what batches.

A file whose size and mtime match the serving version's catalog is skipped unread; one whose mtime moved but whose
bytes hash as before is skipped too (its new mtime is recorded, so the next run does not hash it again). Skipped
files keep their documents, chunks, embeddings and rejects from the catalog, so an unchanged corpus costs a `stat`
per file. Files are read a batch at a time (`index.batch_bytes`): memory follows the batch, not the corpus.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel

from reasonloop.paths import file_sha256
from reasonloop.retrieval.catalog import FileState
from reasonloop.retrieval.config import CorpusConfig
from reasonloop.retrieval.sources import corpus_paths, read_file
from reasonloop.schemas import Document, LoadedCorpus, Reject


class CorpusFile(BaseModel):
    path: str  # relative to the corpus root, as the catalog names it
    size: int
    mtime_ns: int
    known: FileState | None = None  # the catalog's state when it vouches for the file: skipped unread

    @property
    def skipped(self) -> bool:
        return self.known is not None


class CorpusScan(BaseModel):
    files: list[CorpusFile]  # in path order
    removed: list[str]  # in the catalog, gone from the corpus
    touched: list[FileState]  # skipped by their hash: mtime moved, bytes did not

    @property
    def unchanged(self) -> bool:
        return not self.removed and all(f.skipped for f in self.files)


class ReadBatch(BaseModel):
    """The files of a batch that were read: their documents and rejects, and each file's new state."""

    corpus: LoadedCorpus
    states: list[FileState]


def scan_corpus(root: Path, cfg: CorpusConfig, known: dict[str, FileState] | None) -> CorpusScan:
    """Stat every corpus file against `known` (the serving catalog's states; None: read everything)."""
    files, touched = [], []
    for path in corpus_paths(root, cfg):
        rel, stat = path.relative_to(root).as_posix(), path.stat()
        state = (known or {}).get(rel)
        vouched = None
        if state is not None and state.size == stat.st_size:
            if state.mtime_ns == stat.st_mtime_ns:
                vouched = state
            elif state.sha256 and file_sha256(path) == state.sha256:
                vouched = state.model_copy(update={"mtime_ns": stat.st_mtime_ns})
                touched.append(vouched)
        files.append(CorpusFile(path=rel, size=stat.st_size, mtime_ns=stat.st_mtime_ns, known=vouched))
    seen = {f.path for f in files}
    return CorpusScan(files=files, removed=sorted(set(known or {}) - seen), touched=touched)


def batches(files: list[CorpusFile], batch_bytes: int) -> list[list[CorpusFile]]:
    """Consecutive files of about `batch_bytes` (a larger file is a batch of its own)."""
    out: list[list[CorpusFile]] = [[]]
    size = 0
    for file in files:
        if out[-1] and size + file.size > batch_bytes:
            out.append([])
            size = 0
        out[-1].append(file)
        size += file.size
    return [b for b in out if b]


def read_batch(root: Path, files: list[CorpusFile], cfg: CorpusConfig) -> ReadBatch:
    """Read the batch's files the catalog does not vouch for; bad files and records become rejects."""
    documents: list[Document] = []
    rejects: list[Reject] = []
    states = []
    for file in files:
        if file.skipped:
            continue
        digest = hashlib.sha256()
        for item in read_file(root / file.path, root, cfg, digest):
            (rejects if isinstance(item, Reject) else documents).append(item)  # type: ignore[arg-type]
        states.append(FileState(path=file.path, size=file.size, mtime_ns=file.mtime_ns, sha256=digest.hexdigest()))
    return ReadBatch(corpus=LoadedCorpus(documents=documents, rejects=rejects), states=states)


def load_documents(root: Path, cfg: CorpusConfig) -> LoadedCorpus:
    """The whole corpus at once, every file read (benchmarks and tests; a reindex reads it a batch at a time)."""
    return read_batch(root, scan_corpus(root, cfg, None).files, cfg).corpus


def reader_identity(cfg: CorpusConfig) -> str:
    """What decides how files become documents (the reading and screening settings, and this release's readers and
    rules): when it changes, the catalog's file states no longer vouch for anything and every file is read again."""
    from importlib.metadata import version

    settings = cfg.model_dump(mode="json", exclude={"path", "max_bad_fraction"})
    return hashlib.sha256(f"{version('reasonloop')}\x00{sorted(settings.items())}".encode()).hexdigest()[:16]
