"""Building an index version from settings without Prefect: the reindex flow's steps, called as the plain core
functions in the flow's order (tests, the kill-mid-reindex child, the retrieval benchmark)."""

from __future__ import annotations

from reasonloop.providers import build_embedder, chroma_of, index_store_of
from reasonloop.retrieval.chunking import chunk_documents
from reasonloop.retrieval.corpus_scan import CorpusFile, ReadBatch, batches, read_batch
from reasonloop.retrieval.index_build import (
    IndexBuild,
    abandon_index_version,
    begin_index_version,
    finish_index_version,
    publish_index_version,
    stage_batch,
)
from reasonloop.retrieval.index_survey import enforce_bad_fraction, survey_corpus, tally_batch
from reasonloop.retrieval.screening import scan_for_injection, screen_documents
from reasonloop.settings import Settings


def build_index(settings: Settings, full: bool = False) -> IndexBuild:
    """Stage and publish an index version of the configured corpus, a batch of files at a time, after the gate."""
    embedder = build_embedder(settings)
    store, corpus = index_store_of(settings), settings.corpus

    def screened(files: list[CorpusFile]) -> ReadBatch:
        read = read_batch(corpus.path, files, corpus)
        return read.model_copy(update={"corpus": scan_for_injection(screen_documents(read.corpus, corpus),
                                                                    corpus.injection)})

    survey = survey_corpus(store, embedder, corpus, settings.chunking, full)
    for files in [] if survey.unchanged else batches(survey.scan.files, settings.index.batch_bytes):
        tally_batch(survey, files, screened(files).corpus)
    enforce_bad_fraction(survey, corpus.max_bad_fraction)
    chroma = chroma_of(settings)
    with store.lock(settings.index.lock_wait_s):
        staging = begin_index_version(survey, store, chroma, embedder, corpus, settings.chunking,
                                      settings.retrieval.bm25, settings.chroma.upsert_batch_size, full)
        try:
            for files in [] if staging.is_noop else batches(staging.survey.scan.files, settings.index.batch_bytes):
                read = screened(files)
                chunks = chunk_documents(read.corpus.documents, settings.chunking, embedder.count_tokens)
                stage_batch(staging, files, read.corpus, chunks, read.states)
            build = finish_index_version(staging, settings.index.verify_queries)
        except BaseException:
            abandon_index_version(staging)
            raise
        return publish_index_version(build, store, chroma, settings.index.keep_versions)
