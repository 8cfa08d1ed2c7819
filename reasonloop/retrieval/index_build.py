"""Building index versions: plan against the serving version, copy unchanged embeddings, embed the rest, build BM25,
verify; publishing moves the pointer atomically (see index_versions.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from pydantic import BaseModel

from reasonloop import progress
from reasonloop.errors import ReasonloopError
from reasonloop.retrieval.config import BM25Config, ChunkingConfig
from reasonloop.retrieval.embeddings import Embedder
from reasonloop.retrieval.index_versions import (
    DocEntry,
    IndexPlan,
    IndexStore,
    Manifest,
    manifest_hash,
    plan_index,
    version_collection,
)
from reasonloop.retrieval.lexical import LexicalIndex
from reasonloop.retrieval.vectorstore import open_collection
from reasonloop.schemas import Chunk, Document

ENCODE_WINDOW = 512  # texts per encoder call: the encoder sorts by length within a call, so bigger pads less


class IndexBuild(BaseModel):
    """The outcome of a reindex: the serving manifest, what changed, and the embedding work done."""

    manifest: Manifest
    plan: IndexPlan
    built: bool
    embedded: int = 0
    copied: int = 0
    embed_seconds: float = 0.0
    dropped_versions: list[int] = []


class IndexVerificationError(ReasonloopError):
    """A freshly built version failed its checks; the pointer was not moved."""


def chunk_metadata(chunk: Chunk) -> dict[str, str | int | float | bool]:
    return {**chunk.metadata, "doc_id": chunk.doc_id, "title": chunk.title, "source": chunk.source,
            "position": chunk.position, "start": chunk.start, "end": chunk.end, "content_hash": chunk.content_hash}


def index_text(chunk: Chunk, title_prefix: bool) -> str:
    """What gets embedded and BM25-indexed: the title gives a paragraph the subject it often leaves implicit."""
    return f"{chunk.title}\n{chunk.text}" if title_prefix and chunk.title else chunk.text


def embed_into(chunks: list[Chunk], collection: Collection, embedder: Embedder, batch_size: int,
               title_prefix: bool) -> float:
    """Embed in large windows and upsert (Chroma's `add` silently ignores existing ids); returns encoder seconds."""
    seconds = 0.0
    for start in range(0, len(chunks), ENCODE_WINDOW):
        window = chunks[start:start + ENCODE_WINDOW]
        began = time.perf_counter()
        vectors = embedder.embed_uncached([index_text(c, title_prefix) for c in window])
        seconds += time.perf_counter() - began
        for offset in range(0, len(window), batch_size):
            part = window[offset:offset + batch_size]
            collection.upsert(ids=[c.id for c in part], embeddings=vectors[offset:offset + len(part)],
                              documents=[c.text for c in part], metadatas=[chunk_metadata(c) for c in part])
        progress.advance("embed chunks", len(window), len(chunks))
    return seconds


def copy_into(ids: list[str], source: Collection, target: Collection, batch_size: int) -> None:
    """Carry unchanged chunks over with their stored embeddings: no re-embedding."""
    for offset in range(0, len(ids), batch_size):
        got = source.get(ids=ids[offset:offset + batch_size], include=["embeddings", "documents", "metadatas"])
        target.upsert(ids=got["ids"], embeddings=got["embeddings"], documents=got["documents"],
                      metadatas=got["metadatas"])


def verify_version(collection: Collection, manifest: Manifest, embedder: Embedder, samples: int) -> None:
    """The new version must hold exactly the manifest's chunks and find sample chunks by their own text."""
    count = collection.count()
    if count != manifest.n_chunks:
        raise IndexVerificationError(f"{collection.name} holds {count} chunks, the manifest {manifest.n_chunks}; "
                                     "the serving version is unchanged: rerun the reindex")
    ids = [cid for entry in manifest.documents.values() for cid in entry.chunk_ids]
    picks = list(dict.fromkeys(ids[i * len(ids) // samples] for i in range(samples))) if samples and ids else []
    if not picks:
        return
    texts = collection.get(ids=picks, include=["documents"])
    found = collection.query(query_embeddings=embedder.embed(texts["documents"] or []), n_results=5, include=[])
    for cid, hits in zip(texts["ids"], found["ids"], strict=True):
        if cid not in hits:
            raise IndexVerificationError(f"{collection.name}: sample query for chunk {cid} did not find it; "
                                         "the serving version is unchanged")


def _drop_unserved(client: ClientAPI, base: str, kept: list[int]) -> None:
    """Remove version collections that are neither kept nor serving (older ones, or a killed build's)."""
    keep = {version_collection(base, v) for v in kept}
    for name in (c if isinstance(c, str) else c.name for c in client.list_collections()):
        if name.startswith(f"{base}-v") and name not in keep:
            client.delete_collection(name)


def stage_index_version(documents: list[Document], chunks: list[Chunk], embedder: Embedder, store: IndexStore,
                        client: ClientAPI, chunking: ChunkingConfig, bm25: BM25Config, upsert_batch_size: int,
                        verify_queries: int, full: bool = False) -> IndexBuild:
    """Build (not yet serve) a new version: copy unchanged chunks, embed the rest, build BM25, verify.
    The caller holds the reindex lock until it publishes. Unchanged corpus: no new version (built=False)."""
    current = store.current()
    full = full or (current is not None and current.encoder != embedder.identity)  # another encoder: embed all
    plan = plan_index(None if full else current, documents, chunks)
    if current is not None and not full and plan.is_noop:
        return IndexBuild(manifest=current, plan=plan, built=False)
    version = store.next_version()
    store.mark_started(version)
    name = version_collection(store.base, version)
    target = open_collection(client, name, embedder)
    if plan.chunk_ids_to_copy and current is not None:
        copy_into(plan.chunk_ids_to_copy, client.get_collection(current.collection), target,
                  upsert_batch_size)
    seconds = embed_into(plan.chunks_to_embed, target, embedder, upsert_batch_size,
                         chunking.title_prefix)
    LexicalIndex.build([c.id for c in chunks], [index_text(c, chunking.title_prefix) for c in chunks],
                       [chunk_metadata(c) for c in chunks], bm25).save(store.lexical_dir(version))
    entries: dict[str, DocEntry] = {d.id: DocEntry(content_hash=d.content_hash, chunk_ids=[]) for d in documents}
    for chunk in chunks:
        entries[chunk.doc_id].chunk_ids.append(chunk.id)
    manifest = Manifest(
        version=version, collection=name, created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        content_hash=manifest_hash(entries), embedding_model=embedder.name, embedding_sha256=embedder.weights_sha256,
        embedding_backend=embedder.backend, documents=entries, chunking=chunking.model_dump())
    verify_version(target, manifest, embedder, verify_queries)
    return IndexBuild(manifest=manifest, plan=plan, built=True, embedded=len(plan.chunks_to_embed),
                      copied=len(plan.chunk_ids_to_copy), embed_seconds=seconds)


def publish_index_version(build: IndexBuild, store: IndexStore, client: ClientAPI, keep_versions: int) -> IndexBuild:
    """Move the serving pointer to the staged version (atomic), then drop versions beyond `keep_versions` and any
    abandoned build."""
    if not build.built:
        return build
    pointer, dropped = store.publish(build.manifest, keep_versions)
    _drop_unserved(client, store.base, pointer.kept)
    store.forget(dropped)
    return build.model_copy(update={"dropped_versions": dropped})
