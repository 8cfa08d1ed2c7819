"""Reindex: load -> screen (Great Expectations) -> quarantine gate -> chunk -> build a new index version
(unchanged documents keep their embeddings) -> verify -> switch the serving pointer -> log to MLflow."""

from __future__ import annotations

import time

from prefect import flow

from reasonloop.providers import build_embedder
from reasonloop.schemas import FlowReport
from reasonloop.settings import Settings, load_settings
from tasks.chunk import chunk_documents
from tasks.index import build_index_version
from tasks.load import load_documents
from tasks.track import log_reindex_run, publish_quarantine, publish_summary
from tasks.validate import enforce_bad_fraction, screen_documents


@flow(name="reindex", validate_parameters=False)
def reindex(settings: Settings | None = None, full: bool = False) -> FlowReport:
    settings = settings or load_settings()
    started = time.perf_counter()
    loaded = load_documents(settings.corpus.path, settings.corpus)
    screened = screen_documents(loaded, settings.corpus)
    enforce_bad_fraction(screened, settings.corpus.max_bad_fraction)
    chunks = chunk_documents(screened.documents, settings.chunking)
    embedder = build_embedder(settings)
    build = build_index_version(screened.documents, chunks, settings, embedder, full)
    publish_quarantine(screened.rejects)
    report = log_reindex_run(settings, embedder, build, screened.rejects, time.perf_counter() - started)
    publish_summary(report)
    return report
