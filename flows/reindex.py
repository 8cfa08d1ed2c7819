"""Reindex: load -> screen (Great Expectations) -> scan for prompt injection -> quarantine gate -> chunk ->
stage a new index version (unchanged documents keep their embeddings; BM25 rebuilt) -> verify -> retrieval
quality on labeled sets -> floors -> serve it (atomic pointer switch) -> log to MLflow. The reindex lock is held
from staging to serving."""

from __future__ import annotations

import time

from prefect import flow

from reasonloop.index_versions import IndexStore
from reasonloop.providers import build_embedder, open_index_version
from reasonloop.schemas import FlowReport
from reasonloop.settings import Settings, load_settings
from tasks.chunk import chunk_documents
from tasks.index import publish_index_version, stage_index_version
from tasks.load import load_documents, load_quality_sets
from tasks.retrieve import enforce_quality_floors, evaluate_retrieval
from tasks.track import log_reindex_run, publish_quarantine, publish_summary
from tasks.validate import enforce_bad_fraction, scan_for_injection, screen_documents


@flow(name="reindex", validate_parameters=False)
def reindex(settings: Settings | None = None, full: bool = False) -> FlowReport:
    settings = settings or load_settings()
    started = time.perf_counter()
    loaded = load_documents(settings.corpus.path, settings.corpus)
    screened = screen_documents(loaded, settings.corpus)
    screened = scan_for_injection(screened, settings.corpus.injection)
    enforce_bad_fraction(screened, settings.corpus.max_bad_fraction)
    chunks = chunk_documents(screened.documents, settings.chunking)
    quality_sets = load_quality_sets(settings.quality)
    embedder = build_embedder(settings)
    with IndexStore(settings.state_dir, settings.chroma.collection).lock(settings.index.lock_wait_s):
        build = stage_index_version(screened.documents, chunks, settings, embedder, full)
        quality = evaluate_retrieval(quality_sets, open_index_version(settings, embedder, build.manifest).retriever)
        enforce_quality_floors(quality, settings.quality)
        build = publish_index_version(build, settings)
    publish_quarantine(screened.rejects)
    report = log_reindex_run(settings, embedder, build, screened, quality, time.perf_counter() - started)
    publish_summary(report)
    return report
