"""Building an index version from settings without Prefect: the reindex flow's steps, called as the plain core
functions in the flow's order (tests, the kill-mid-reindex child, the retrieval benchmark)."""

from __future__ import annotations

from reasonloop.providers import build_embedder, chroma_of, index_store_of
from reasonloop.retrieval.corpus_scan import batches
from reasonloop.retrieval.index_build import (
    IndexBuild,
    abandon_index_version,
    begin_index_version,
    finish_index_version,
    publish_index_version,
    stage_files,
)
from reasonloop.retrieval.index_survey import enforce_bad_fraction, gate_files, survey_corpus
from reasonloop.settings import Settings


def build_index(settings: Settings, full: bool = False) -> IndexBuild:
    """Stage and publish an index version of the configured corpus, a batch of files at a time, after the gate."""
    embedder = build_embedder(settings)
    store, corpus = index_store_of(settings), settings.corpus
    survey = survey_corpus(store, embedder, corpus, settings.chunking, full)
    for files in [] if survey.unchanged else batches(survey.scan.files, settings.index.batch_bytes):
        gate_files(survey, files, corpus)
    enforce_bad_fraction(survey, corpus.max_bad_fraction)
    chroma = chroma_of(settings)
    with store.lock(settings.index.lock_wait_s):
        staging = begin_index_version(survey, store, chroma, embedder, corpus, settings.chunking,
                                      settings.retrieval.bm25, settings.chroma.upsert_batch_size, full)
        try:
            for files in [] if staging.is_noop else batches(staging.survey.scan.files, settings.index.batch_bytes):
                stage_files(staging, files, corpus)
            build = finish_index_version(staging, settings.index.verify_queries)
        except BaseException:
            abandon_index_version(staging)
            raise
        return publish_index_version(build, store, chroma, settings.index.keep_versions)
