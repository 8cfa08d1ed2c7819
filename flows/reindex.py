"""Reindex: load documents -> validate (GX) -> chunk -> embed -> upsert into Chroma -> log to MLflow."""

from __future__ import annotations

import time

from prefect import flow

from reasonloop.providers import build_collection, build_embedder
from reasonloop.schemas import FlowReport
from reasonloop.settings import Settings, load_settings
from tasks.chunk import chunk_documents
from tasks.index import index_chunks
from tasks.load import load_documents
from tasks.track import log_reindex_run, publish_summary
from tasks.validate import validate_documents


@flow(name="reindex", validate_parameters=False)
def reindex(settings: Settings | None = None) -> FlowReport:
    settings = settings or load_settings()
    started = time.perf_counter()
    documents = load_documents(settings.corpus.path, settings.corpus)
    validate_documents(documents)
    chunks = chunk_documents(documents, settings.chunking)
    embedder = build_embedder(settings)
    stats = index_chunks(chunks, build_collection(settings, embedder), embedder, settings.chroma.upsert_batch_size)
    report = log_reindex_run(settings, embedder, stats, time.perf_counter() - started)
    publish_summary(report, {"documents": str(stats.n_documents), "chunks": str(stats.n_chunks),
                             "in collection": str(stats.n_in_collection),
                             "embedding throughput": f"{stats.chunks_per_second:.1f} chunks/s"})
    return report
