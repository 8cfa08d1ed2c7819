"""Building an index version from settings without Prefect: the reindex flow's staging and publishing, called as the
plain core functions (tests, the kill-mid-reindex child, the retrieval benchmark)."""

from __future__ import annotations

from reasonloop.providers import build_embedder, chroma_of, index_store_of
from reasonloop.retrieval.chunking import chunk_documents
from reasonloop.retrieval.index_build import IndexBuild, publish_index_version, stage_index_version
from reasonloop.retrieval.sources import load_documents
from reasonloop.settings import Settings


def build_index(settings: Settings, full: bool = False) -> IndexBuild:
    """Stage and publish an index version of the configured corpus."""
    embedder = build_embedder(settings)
    store, chroma = index_store_of(settings), chroma_of(settings)
    docs = load_documents(settings.corpus.path, settings.corpus).documents
    chunks = chunk_documents(docs, settings.chunking, embedder.count_tokens)
    staged = stage_index_version(docs, chunks, embedder, store, chroma, settings.chunking, settings.retrieval.bm25,
                                 settings.chroma.upsert_batch_size, settings.index.verify_queries, full)
    return publish_index_version(staged, store, chroma, settings.index.keep_versions)
