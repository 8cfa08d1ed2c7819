"""Reindex: load -> screen (Great Expectations) -> scan for prompt injection -> quarantine gate -> chunk ->
stage a new index version (unchanged documents keep their embeddings; BM25 rebuilt) -> verify -> retrieval
quality on labeled sets -> floors -> serve it (atomic pointer switch) -> log to MLflow. The reindex lock is held
from staging to serving."""

from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.utilities.annotations import quote

from reasonloop.providers import build_embedder, build_tracker, chroma_of, index_store_of, open_index_version
from reasonloop.schemas import FlowReport
from reasonloop.settings import Settings, load_settings
from tasks.chunk import chunk_documents
from tasks.index import publish_index_version, stage_index_version
from tasks.load import load_documents
from tasks.retrieve import enforce_quality_floors, evaluate_retrieval, load_quality_sets
from tasks.track import log_reindex_run, publish_quarantine, publish_summary
from tasks.validate import enforce_bad_fraction, scan_for_injection, screen_documents


@flow(name="reindex", validate_parameters=False)
def reindex(settings: Settings | None = None, full: bool = False) -> FlowReport:
    settings = settings or load_settings()
    started = time.perf_counter()
    loaded = load_documents(settings.corpus.path, settings.corpus)
    # quote(): Prefect would otherwise walk every document and chunk of each argument looking for futures
    # (~4 ms per document per task), which dominated a reindex of an unchanged corpus.
    screened = screen_documents(quote(loaded), settings.corpus)
    screened = scan_for_injection(quote(screened), settings.corpus.injection)
    enforce_bad_fraction(quote(screened), settings.corpus.max_bad_fraction)
    embedder = build_embedder(settings)
    chunks = chunk_documents(quote(screened.documents), settings.chunking, embedder.count_tokens)
    quality_sets = load_quality_sets(settings.quality)
    store, chroma = index_store_of(settings), chroma_of(settings)
    with store.lock(settings.index.lock_wait_s):
        build = stage_index_version(quote(screened.documents), quote(chunks), embedder, store, chroma,
                                    settings.chunking, settings.retrieval.bm25, settings.chroma.upsert_batch_size,
                                    settings.index.verify_queries, full)
        staged = open_index_version(settings, embedder, build.manifest)
        quality = evaluate_retrieval(quote(quality_sets), staged.retriever)
        for note in enforce_quality_floors(quality, settings.quality, settings.corpus.path):
            get_run_logger().warning(note)
        build = publish_index_version(quote(build), store, chroma, settings.index.keep_versions)
    publish_quarantine(screened.rejects)
    report = log_reindex_run(build_tracker(settings), quote(build), quote(screened), quality,
                             time.perf_counter() - started, settings.corpus, settings.retrieval,
                             settings.chunking.title_prefix)
    publish_summary(report)
    return report
