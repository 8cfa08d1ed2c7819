"""Building index versions a batch of files at a time, once the gate (index_survey.py) has passed: files the serving
version's catalog vouches for are carried over unread (documents, chunks, embeddings, rejects); the others are read,
screened and chunked by the flow, and here their unchanged documents are copied and the rest embedded. BM25 and the
catalog are written as the batches come, so memory follows the batch, not the corpus. Publishing moves the pointer
atomically (index_versions.py)."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from pydantic import BaseModel

from reasonloop import progress
from reasonloop.errors import ReasonloopError
from reasonloop.retrieval.catalog import Catalog, DocRow, FileState
from reasonloop.retrieval.chunking import chunk_documents
from reasonloop.retrieval.config import BM25Config, ChunkingConfig, CorpusConfig
from reasonloop.retrieval.corpus_scan import CorpusFile
from reasonloop.retrieval.embeddings import Embedder
from reasonloop.retrieval.index_survey import Survey, by_file, duplicate, screened_files, survey_corpus
from reasonloop.retrieval.index_versions import PLAN_EXAMPLES, IndexPlan, IndexStore, Manifest, version_collection
from reasonloop.retrieval.lexical_build import LexicalBuilder
from reasonloop.retrieval.sources import record_line
from reasonloop.retrieval.vectorstore import open_collection
from reasonloop.schemas import Chunk, Document, LoadedCorpus, Reject

ENCODE_WINDOW = 512  # texts per encoder call: the encoder sorts by length within a call, so bigger pads less


class IndexBuild(BaseModel):
    """The outcome of a reindex: the serving manifest, what changed, the embedding work done, what was refused."""

    manifest: Manifest
    plan: IndexPlan
    built: bool
    embedded: int = 0
    copied: int = 0
    embed_seconds: float = 0.0
    dropped_versions: list[int] = []
    rejects: list[Reject] = []
    flagged: list[str] = []


class IndexVerificationError(ReasonloopError):
    """A freshly built version failed its checks; the pointer was not moved."""


def chunk_metadata(chunk: Chunk) -> dict[str, str | int | float | bool]:
    return {**chunk.metadata, "doc_id": chunk.doc_id, "title": chunk.title, "source": chunk.source,
            "position": chunk.position, "start": chunk.start, "end": chunk.end, "content_hash": chunk.content_hash}


def index_text(chunk: Chunk, title_prefix: bool) -> str:
    """What gets embedded and BM25-indexed: the title gives a paragraph the subject it often leaves implicit."""
    return f"{chunk.title}\n{chunk.text}" if title_prefix and chunk.title else chunk.text


def stored_index_text(text: str, metadata: dict[str, Any], title_prefix: bool) -> str:
    """`index_text` of a chunk read back from Chroma."""
    title = str(metadata.get("title") or "")
    return f"{title}\n{text}" if title_prefix and title else text


@dataclass
class Staging:
    """A version being built under the reindex lock: the survey it was planned from, and the new version's
    collection, catalog and BM25 builder (None for all three when nothing changed)."""

    store: IndexStore
    client: ClientAPI
    embedder: Embedder
    chunking: ChunkingConfig
    upsert_batch_size: int
    survey: Survey
    plan: IndexPlan = field(default_factory=IndexPlan)
    version: int | None = None
    target: Collection | None = None
    catalog: Catalog | None = None
    lexical: LexicalBuilder | None = None
    embedded: int = 0
    copied: int = 0
    embed_seconds: float = 0.0

    @property
    def is_noop(self) -> bool:
        return self.version is None

    @property
    def current(self) -> Manifest | None:
        return self.survey.current

    @property
    def previous(self) -> Catalog | None:
        return self.survey.previous


def begin_index_version(survey: Survey, store: IndexStore, client: ClientAPI, embedder: Embedder,
                        corpus: CorpusConfig, chunking: ChunkingConfig, bm25: BM25Config, upsert_batch_size: int,
                        full: bool = False) -> Staging:
    """Under the reindex lock, start a new version from the gate's survey, unless every file is vouched for. If
    another reindex published a version since the survey, the corpus is surveyed again against that one."""
    if store.current() != survey.current:
        survey = survey_corpus(store, embedder, corpus, chunking, full)
    staging = Staging(store, client, embedder, chunking, upsert_batch_size, survey)
    if survey.unchanged and survey.previous is not None:
        survey.previous.update_file_states(survey.scan.touched)
        staging.plan = IndexPlan(n_unchanged=survey.current.n_documents if survey.current else 0,
                                 files_skipped=len(survey.scan.files))
        return staging
    staging.version = store.next_version()
    store.mark_started(staging.version)
    staging.target = open_collection(client, version_collection(store.base, staging.version), embedder)
    staging.catalog = Catalog.create(store.catalog_path(staging.version))
    lexical_dir = store.lexical_dir(staging.version)
    shutil.rmtree(lexical_dir, ignore_errors=True)
    staging.lexical = LexicalBuilder(lexical_dir, bm25)
    return staging


@dataclass
class _Rows:
    """What one batch adds to the lexical index and the catalog, written only once its vectors are in Chroma."""

    lexical_ids: list[str] = field(default_factory=list)
    lexical_texts: list[str] = field(default_factory=list)
    lexical_meta: list[dict[str, Any]] = field(default_factory=list)
    documents: list[DocRow] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    flagged: list[tuple[str, str]] = field(default_factory=list)
    files: list[FileState] = field(default_factory=list)
    plan: IndexPlan = field(default_factory=IndexPlan)
    copied: int = 0
    embedded: int = 0
    seconds: float = 0.0

    def count_into(self, staging: Staging) -> None:
        """Add this batch's counts to the build's (only once the batch's writes are done: a retry counts once)."""
        staging.plan.merge(self.plan)
        staging.copied += self.copied
        staging.embedded += self.embedded
        staging.embed_seconds += self.seconds


def stage_files(staging: Staging, files: list[CorpusFile], corpus: CorpusConfig) -> None:
    """Pass two over a batch of files: read, screened, chunked and staged (one task per batch, so no per-chunk
    result crosses a task boundary)."""
    read = screened_files(files, corpus)
    chunks = chunk_documents(read.corpus.documents, staging.chunking, staging.embedder.count_tokens)
    stage_batch(staging, files, read.corpus, chunks, read.states)


def stage_batch(staging: Staging, files: list[CorpusFile], screened: LoadedCorpus, chunks: list[Chunk],
                states: list[FileState]) -> None:
    """Add one batch of files to the version being built, in path order: skipped files are carried over from the
    catalog, read ones copied (unchanged documents) or embedded. Chroma is written first (upserts: a retried batch
    writes the same rows), then the lexical rows and the catalog, so a failed batch leaves no catalog rows behind."""
    assert staging.catalog is not None and staging.lexical is not None
    rows, taken = _Rows(), set[str]()  # taken: doc ids of this batch so far (earlier batches: the catalog)
    state_of = {s.path: s for s in states}
    read = _ReadFiles(by_file(screened.documents, set(state_of)), {}, {}, set(screened.flagged))
    for reject in screened.rejects:
        read.rejects.setdefault(reject.source, []).append(reject)
    for chunk in chunks:
        read.chunks.setdefault(chunk.doc_id, []).append(chunk)
    for file in files:
        before = len(rows.rejects)
        if file.known is not None:
            _carry_file(staging, file.path, taken, rows)
        else:
            _stage_file(staging, file.path, read, taken, rows)
        rows.files.append(_vouching(file.known or state_of[file.path], rows, before))
    rows.count_into(staging)
    staging.lexical.add(rows.lexical_ids, rows.lexical_texts, rows.lexical_meta)
    staging.catalog.add_documents(rows.documents)
    staging.catalog.add_rejects(rows.rejects)
    staging.catalog.add_flagged(rows.flagged)
    for state in rows.files:
        staging.catalog.add_file(state)
    staging.catalog.db.commit()


@dataclass(frozen=True)
class _ReadFiles:
    """A batch's read files, by file (documents, rejects) and by document (chunks), and its injection suspects."""

    documents: dict[str, list[Document]]
    rejects: dict[str, list[Reject]]
    chunks: dict[str, list[Chunk]]
    flagged: set[str]


def _carry_file(staging: Staging, path: str, taken: set[str], rows: _Rows) -> None:
    """A skipped file: its catalog rows and stored chunks, as the serving version has them."""
    assert staging.previous is not None
    rows.rejects.extend(staging.previous.rejects_of(path))
    kept = _without_duplicates(staging, staging.previous.documents_of(path), taken, rows)
    _copy_chunks(staging, [cid for row in kept for cid in row.chunk_ids], rows)
    rows.documents.extend(kept)
    kept_ids = {r.doc_id for r in kept}
    rows.flagged.extend((doc_id, path) for doc_id in staging.previous.flagged_of(path) if doc_id in kept_ids)
    rows.plan.files_skipped += 1
    rows.plan.n_unchanged += len(kept)


def _stage_file(staging: Staging, path: str, read: _ReadFiles, taken: set[str], rows: _Rows) -> None:
    """A read file: documents whose content hash the serving version holds are copied, the rest embedded."""
    docs = read.documents.get(path, [])
    rows.rejects.extend(read.rejects.get(path, []))
    fresh = _without_duplicates(staging, [DocRow(doc_id=d.id, path=path, content_hash=d.content_hash,
                                                 chunk_ids=[c.id for c in read.chunks.get(d.id, [])]) for d in docs],
                                taken, rows, [record_line(d.source) for d in docs])
    old = staging.previous.documents([r.doc_id for r in fresh]) if staging.previous is not None else {}
    same = {r.doc_id for r in fresh if r.doc_id in old and old[r.doc_id].content_hash == r.content_hash}
    _copy_chunks(staging, [cid for r in fresh if r.doc_id in same for cid in old[r.doc_id].chunk_ids], rows)
    _embed_chunks(staging, [c for r in fresh if r.doc_id not in same for c in read.chunks.get(r.doc_id, [])], rows)
    rows.plan.n_unchanged += len(same)
    rows.plan.count(added=[r.doc_id for r in fresh if r.doc_id not in old],
                    changed=[r.doc_id for r in fresh if r.doc_id in old and r.doc_id not in same])
    rows.documents.extend(old[r.doc_id] if r.doc_id in same else r for r in fresh)
    rows.flagged.extend((r.doc_id, path) for r in fresh if r.doc_id in read.flagged)
    rows.plan.files_read += 1


def _vouching(state: FileState, rows: _Rows, before: int) -> FileState:
    """A file that lost a document to another file's id is read again next time (the other file may be gone)."""
    if any(r.reason.startswith("duplicate id") for r in rows.rejects[before:]):
        return state.model_copy(update={"mtime_ns": -1, "sha256": ""})
    return state


def _without_duplicates(staging: Staging, rows: list[DocRow], taken: set[str], out: _Rows,
                        lines: list[int | None] | None = None) -> list[DocRow]:
    """Documents whose id an earlier file already gave are refused (the first one in path order is kept)."""
    assert staging.catalog is not None
    earlier = staging.catalog.present([r.doc_id for r in rows]) | taken
    kept = []
    for row, line in zip(rows, lines or [None] * len(rows), strict=True):
        if row.doc_id in earlier:
            out.rejects.append(duplicate(row.path, line, row.doc_id))
        else:
            earlier.add(row.doc_id)
            kept.append(row)
    taken.update(r.doc_id for r in kept)
    return kept


def _copy_chunks(staging: Staging, ids: list[str], rows: _Rows) -> None:
    """Carry unchanged chunks over with their stored embeddings (no re-embedding); they join the lexical rows."""
    assert staging.current is not None or not ids
    if not ids:
        return
    assert staging.target is not None and staging.current is not None
    source = staging.client.get_collection(staging.current.collection)
    size = staging.upsert_batch_size
    for offset in range(0, len(ids), size):
        got = source.get(ids=ids[offset:offset + size], include=["embeddings", "documents", "metadatas"])
        staging.target.upsert(ids=got["ids"], embeddings=got["embeddings"], documents=got["documents"],
                              metadatas=got["metadatas"])
        for cid, text, meta in zip(got["ids"], got["documents"] or [], got["metadatas"] or [], strict=True):
            rows.lexical_ids.append(cid)
            rows.lexical_texts.append(stored_index_text(text, dict(meta), staging.chunking.title_prefix))
            rows.lexical_meta.append(dict(meta))
    rows.copied += len(ids)


def _embed_chunks(staging: Staging, chunks: list[Chunk], rows: _Rows) -> None:
    """Embed in large windows and upsert (Chroma's `add` silently ignores existing ids)."""
    assert staging.target is not None
    size, title_prefix = staging.upsert_batch_size, staging.chunking.title_prefix
    for start in range(0, len(chunks), ENCODE_WINDOW):
        window = chunks[start:start + ENCODE_WINDOW]
        texts = [index_text(c, title_prefix) for c in window]
        began = time.perf_counter()
        vectors = staging.embedder.embed_uncached(texts)
        rows.seconds += time.perf_counter() - began
        for offset in range(0, len(window), size):
            part = window[offset:offset + size]
            staging.target.upsert(ids=[c.id for c in part], embeddings=vectors[offset:offset + len(part)],
                                  documents=[c.text for c in part], metadatas=[chunk_metadata(c) for c in part])
        rows.lexical_ids.extend(c.id for c in window)
        rows.lexical_texts.extend(texts)
        rows.lexical_meta.extend(chunk_metadata(c) for c in window)
        progress.advance("embed chunks", len(window), len(chunks))
    rows.embedded += len(chunks)


def verify_version(collection: Collection, manifest: Manifest, catalog: Catalog, embedder: Embedder,
                   samples: int) -> None:
    """The new version must hold exactly the catalog's chunks and find sample chunks by their own text."""
    count = collection.count()
    if count != manifest.n_chunks:
        raise IndexVerificationError(f"{collection.name} holds {count} chunks, the catalog {manifest.n_chunks}; "
                                     "the serving version is unchanged: rerun the reindex")
    wanted = {i * manifest.n_chunks // samples for i in range(samples)} if samples and manifest.n_chunks else set()
    picks = [cid for i, cid in enumerate(catalog.chunk_ids()) if i in wanted]
    if not picks:
        return
    texts = collection.get(ids=picks, include=["documents"])
    found = collection.query(query_embeddings=embedder.embed(texts["documents"] or []), n_results=5, include=[])
    for cid, hits in zip(texts["ids"], found["ids"], strict=True):
        if cid not in hits:
            raise IndexVerificationError(f"{collection.name}: sample query for chunk {cid} did not find it; "
                                         "the serving version is unchanged")


def finish_index_version(staging: Staging, verify_queries: int) -> IndexBuild:
    """Close the version: removed documents, BM25 scores, the manifest, the checks. Nothing changed at the document
    level: the staged version is dropped and the serving one stays."""
    current = staging.current
    if staging.is_noop:
        assert current is not None and staging.previous is not None
        return IndexBuild(manifest=current, plan=staging.plan, built=False, rejects=staging.previous.all_rejects(),
                          flagged=staging.previous.all_flagged())
    catalog, lexical, target = staging.catalog, staging.lexical, staging.target
    assert catalog is not None and lexical is not None and target is not None
    catalog.db.commit()
    n_documents, n_chunks = catalog.counts()
    rejects, flagged = catalog.all_rejects(), catalog.all_flagged()
    if staging.previous is not None:
        staging.plan.n_removed, staging.plan.removed = staging.previous.missing_from(catalog, PLAN_EXAMPLES)
    previous, removed_files = staging.previous, staging.survey.scan.removed
    if current is not None and previous is not None and staging.plan.is_noop and not removed_files:
        previous.update_file_states(list(catalog.file_states().values()))  # read ones: skipped next time
        abandon_index_version(staging)
        return IndexBuild(manifest=current, plan=staging.plan, built=False, rejects=rejects, flagged=flagged)
    lexical.finish()
    manifest = Manifest(
        version=staging.version or 0, collection=target.name,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        content_hash=catalog.content_hash(), embedding_model=staging.embedder.name,
        embedding_sha256=staging.embedder.weights_sha256, embedding_backend=staging.embedder.backend,
        chunking=staging.chunking.model_dump(), reader=staging.survey.reader, n_documents=n_documents,
        n_chunks=n_chunks)
    verify_version(target, manifest, catalog, staging.embedder, verify_queries)
    catalog.finish()
    return IndexBuild(manifest=manifest, plan=staging.plan, built=True, embedded=staging.embedded,
                      copied=staging.copied, embed_seconds=staging.embed_seconds, rejects=rejects, flagged=flagged)


def abandon_index_version(staging: Staging) -> None:
    """Drop a version that will not be published: its collection, catalog and BM25 files (the pointer never moved)."""
    if staging.version is None:
        return
    if staging.catalog is not None:
        staging.catalog.close()
        staging.catalog.path.unlink(missing_ok=True)
    if staging.target is not None:
        staging.client.delete_collection(staging.target.name)
    shutil.rmtree(staging.store.lexical_dir(staging.version), ignore_errors=True)
    staging.version = None


def _drop_unserved(client: ClientAPI, base: str, kept: list[int]) -> None:
    """Remove version collections that are neither kept nor serving (older ones, or a killed build's)."""
    keep = {version_collection(base, v) for v in kept}
    for name in (c if isinstance(c, str) else c.name for c in client.list_collections()):
        if name.startswith(f"{base}-v") and name not in keep:
            client.delete_collection(name)


def publish_index_version(build: IndexBuild, store: IndexStore, client: ClientAPI, keep_versions: int) -> IndexBuild:
    """Move the serving pointer to the staged version (atomic), then drop versions beyond `keep_versions` and any
    abandoned build."""
    if not build.built:
        return build
    pointer, dropped = store.publish(build.manifest, keep_versions)
    _drop_unserved(client, store.base, pointer.kept)
    store.forget(dropped)
    return build.model_copy(update={"dropped_versions": dropped})
