"""Embedding chunks and writing them to Chroma: large encoder windows, explicit upserts, stale ids removed."""

from __future__ import annotations

import time

from chromadb.api.models.Collection import Collection
from prefect import task
from prefect.cache_policies import NO_CACHE

from reasonloop import progress
from reasonloop.embeddings import Embedder
from reasonloop.retry import is_transient
from reasonloop.schemas import Chunk, IndexStats

ENCODE_WINDOW = 512  # texts per encoder call: the encoder sorts by length within a call, so bigger pads less


def chunk_metadata(chunk: Chunk) -> dict[str, str | int | float | bool]:
    return {**chunk.metadata, "doc_id": chunk.doc_id, "title": chunk.title, "source": chunk.source,
            "position": chunk.position, "start": chunk.start, "end": chunk.end, "content_hash": chunk.content_hash}


@task(name="index-chunks", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=is_transient,
      cache_policy=NO_CACHE)
def index_chunks(chunks: list[Chunk], collection: Collection, embedder: Embedder, upsert_batch_size: int) -> IndexStats:
    """Upsert every chunk (Chroma's `add` silently ignores existing ids) and delete ids no longer present,
    so the collection mirrors the corpus."""
    embed_seconds = 0.0
    for start in range(0, len(chunks), ENCODE_WINDOW):
        window = chunks[start:start + ENCODE_WINDOW]
        began = time.perf_counter()
        vectors = embedder.embed_uncached([c.text for c in window])
        embed_seconds += time.perf_counter() - began
        for offset in range(0, len(window), upsert_batch_size):
            part = window[offset:offset + upsert_batch_size]
            collection.upsert(ids=[c.id for c in part], embeddings=vectors[offset:offset + len(part)],
                              documents=[c.text for c in part], metadatas=[chunk_metadata(c) for c in part])
        progress.advance("embed chunks", len(window), len(chunks))
    wanted = {c.id for c in chunks}
    stale = [i for i in collection.get(include=[])["ids"] if i not in wanted]
    for offset in range(0, len(stale), upsert_batch_size):
        collection.delete(ids=stale[offset:offset + upsert_batch_size])
    return IndexStats(n_documents=len({c.doc_id for c in chunks}), n_chunks=len(chunks),
                      n_in_collection=collection.count(), embed_seconds=embed_seconds,
                      chunks_per_second=len(chunks) / embed_seconds if embed_seconds else 0.0)
