"""Pass one of a reindex, before anything is written: the corpus surveyed against the serving version (which files
changed), then tallied batch by batch (good documents, rejects, ids given twice) for the bad-input gate."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from reasonloop.retrieval.catalog import Catalog
from reasonloop.retrieval.config import ChunkingConfig, CorpusConfig
from reasonloop.retrieval.corpus_scan import CorpusFile, CorpusScan, ReadBatch, read_batch, reader_identity, scan_corpus
from reasonloop.retrieval.embeddings import Embedder
from reasonloop.retrieval.index_versions import IndexStore, Manifest
from reasonloop.retrieval.screening import scan_for_injection, screen_documents
from reasonloop.retrieval.sources import record_line
from reasonloop.schemas import Document, LoadedCorpus, Reject
from reasonloop.validation import check_bad_fraction


@dataclass
class Survey:
    """The corpus against the serving version, before anything is written: the file scan, and (filled batch by batch
    by `tally_batch`) the whole corpus' good documents and rejects, for the bad-input gate."""

    current: Manifest | None
    previous: Catalog | None  # the serving version's catalog; None: nothing to carry over
    scan: CorpusScan
    reader: str
    unchanged: bool  # every file vouched for: no new version
    ids: sqlite3.Connection = field(default_factory=lambda: sqlite3.connect("", check_same_thread=False))
    n_good: int = 0
    rejects: list[Reject] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ids.execute("CREATE TABLE seen (doc_id TEXT PRIMARY KEY)")  # on disk when large: memory stays flat


def survey_corpus(store: IndexStore, embedder: Embedder, corpus: CorpusConfig, chunking: ChunkingConfig,
                  full: bool = False) -> Survey:
    """Scan the corpus against the serving version. Another encoder or chunking re-reads and re-embeds everything;
    other reading settings re-read everything."""
    current = store.current()
    reader = reader_identity(corpus)
    full = full or (current is not None and (current.encoder != embedder.identity
                                             or current.chunking != chunking.model_dump()))
    previous = None if full or current is None else store.catalog(current)
    trusted = previous.file_states() if previous is not None and current and current.reader == reader else None
    scan = scan_corpus(corpus.path, corpus, trusted)
    return Survey(current, previous, scan, reader, unchanged=trusted is not None and scan.unchanged)


def screened_files(files: list[CorpusFile], corpus: CorpusConfig, injection: bool = True) -> ReadBatch:
    """A batch's files read (those the catalog does not vouch for), the Great Expectations suite over their
    documents and, with `injection`, the prompt-injection scan."""
    read = read_batch(corpus.path, files, corpus)
    screened = screen_documents(read.corpus, corpus)
    return read.model_copy(update={"corpus": scan_for_injection(screened, corpus.injection) if injection
                                   else screened})


def gate_files(survey: Survey, files: list[CorpusFile], corpus: CorpusConfig) -> None:
    """Pass one over a batch of files: read, screened (the injection scan only when it refuses documents) and
    tallied."""
    tally_batch(survey, files, screened_files(files, corpus, corpus.injection == "quarantine").corpus)


def tally_batch(survey: Survey, files: list[CorpusFile], screened: LoadedCorpus) -> None:
    """Count one batch's good documents and rejects, as staging will (a document whose id an earlier file gave is
    a reject); skipped files count what their catalog rows say."""
    documents_of = by_file(screened.documents, {f.path for f in files})
    for file in files:
        if file.known is not None and survey.previous is not None:
            ids = [r.doc_id for r in survey.previous.documents_of(file.path)]
            survey.rejects.extend(survey.previous.rejects_of(file.path))
            lines: list[int | None] = [None] * len(ids)
        else:
            docs = documents_of.get(file.path, [])
            ids, lines = [d.id for d in docs], [record_line(d.source) for d in docs]
            survey.rejects.extend(r for r in screened.rejects if r.source == file.path)
        for doc_id, line in zip(ids, lines, strict=True):
            if survey.ids.execute("INSERT OR IGNORE INTO seen VALUES (?)", (doc_id,)).rowcount:
                survey.n_good += 1
            else:
                survey.rejects.append(duplicate(file.path, line, doc_id))


def enforce_bad_fraction(survey: Survey, max_bad_fraction: float) -> float:
    """Fail, before anything is written, when more than `max_bad_fraction` of the inputs were rejected (an unchanged
    corpus was gated when its version was built)."""
    if survey.unchanged:
        return 0.0
    return check_bad_fraction(survey.n_good, survey.rejects, max_bad_fraction, "corpus.max_bad_fraction",
                              "nothing was indexed")


def duplicate(path: str, line: int | None, doc_id: str) -> Reject:
    return Reject(source=path, line=line, reason=f"duplicate id '{doc_id}' (the first one in path order is kept)")


def by_file(documents: list[Document], paths: set[str]) -> dict[str, list[Document]]:
    out: dict[str, list[Document]] = {}
    for doc in documents:
        out.setdefault(file_of(doc.source, paths), []).append(doc)
    return out


def file_of(source: str, paths: set[str] | dict[str, Any]) -> str:
    """The corpus file a document came from: its source, or its source without the `:line` of a record."""
    return source if source in paths else source.rsplit(":", 1)[0]
