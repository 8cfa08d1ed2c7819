"""Reindex, a batch of files at a time. Survey the corpus against the serving version's catalog (files whose size
and mtime, or bytes, match are skipped unread) -> per batch: read -> screen (Great Expectations) -> scan for prompt
injection (when it quarantines) -> tally -> the quarantine gate over the whole corpus, before anything is written ->
under the reindex lock, per batch again: read -> screen -> scan -> chunk -> stage (unchanged documents keep their
embeddings) -> finish: BM25, verify -> retrieval quality on labeled sets -> floors -> serve it (atomic pointer
switch) -> log to MLflow. A failure after the gate drops the version being built; the serving one stays."""

from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.utilities.annotations import quote

from reasonloop.providers import build_embedder, build_tracker, chroma_of, index_store_of, open_index_version
from reasonloop.retrieval.corpus_scan import batches
from reasonloop.retrieval.index_build import abandon_index_version
from reasonloop.schemas import FlowReport
from reasonloop.settings import Settings, load_settings
from tasks.index import (
    begin_index_version,
    enforce_bad_fraction,
    finish_index_version,
    gate_files,
    publish_index_version,
    stage_files,
    survey_corpus,
)
from tasks.retrieve import enforce_quality_floors, evaluate_retrieval, load_quality_sets
from tasks.track import log_reindex_run, publish_quarantine, publish_summary


@flow(name="reindex", validate_parameters=False)
def reindex(settings: Settings | None = None, full: bool = False) -> FlowReport:
    settings = settings or load_settings()
    started, corpus = time.perf_counter(), settings.corpus
    embedder = build_embedder(settings)
    quality_sets = load_quality_sets(settings.quality)
    store = index_store_of(settings)
    # pass one, nothing written: the bad-input gate over the whole corpus. quote(): Prefect would otherwise walk
    # every document of each argument looking for futures
    survey = survey_corpus(store, embedder, corpus, settings.chunking, full)
    for files in [] if survey.unchanged else batches(survey.scan.files, settings.index.batch_bytes):
        gate_files(quote(survey), quote(files), corpus)
    enforce_bad_fraction(quote(survey), corpus.max_bad_fraction)
    chroma = chroma_of(settings)
    with store.lock(settings.index.lock_wait_s):
        # pass two: stage a new version from the changed files, carrying the others over
        staging = begin_index_version(quote(survey), store, chroma, embedder, corpus, settings.chunking,
                                      settings.retrieval.bm25, settings.chroma.upsert_batch_size, full)
        try:
            for files in [] if staging.is_noop else batches(staging.survey.scan.files, settings.index.batch_bytes):
                stage_files(quote(staging), quote(files), corpus)
            build = finish_index_version(quote(staging), settings.index.verify_queries)
            staged = open_index_version(settings, embedder, build.manifest)
            quality = evaluate_retrieval(quote(quality_sets), staged.retriever)
            for note in enforce_quality_floors(quality, settings.quality, corpus.path):
                get_run_logger().warning(note)
        except BaseException:
            abandon_index_version(staging)
            raise
        build = publish_index_version(quote(build), store, chroma, settings.index.keep_versions)
    publish_quarantine(build.rejects)
    report = log_reindex_run(build_tracker(settings), quote(build), quality, time.perf_counter() - started,
                             corpus, settings.retrieval, settings.chunking.title_prefix)
    publish_summary(report)
    return report
