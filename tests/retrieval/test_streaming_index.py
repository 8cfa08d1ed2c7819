"""The reindex a batch of files at a time: the same version as one batch, the BM25 builder equal to bm25s' in-memory
index, and unchanged files skipped unread (size and mtime, else bytes)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
import pytest

from reasonloop.providers import build_embedder, chroma_of, open_serving_index
from reasonloop.retrieval import corpus_scan, lexical_build
from reasonloop.retrieval.config import BM25Config
from reasonloop.retrieval.index_versions import IndexStore
from reasonloop.retrieval.lexical import LexicalIndex
from reasonloop.settings import Settings, load_settings

from ..conftest import SAMPLE_CORPUS, SAMPLE_QUESTIONS, read_jsonl, write_jsonl
from ..support.indexing import build_index


def split_corpus(root: Path, duplicate: bool = True) -> Path:
    """The sample corpus over five files of two types with a bad line, and (`duplicate`) an id given twice."""
    records = read_jsonl(SAMPLE_CORPUS)[:16]
    for n in range(3):
        write_jsonl(root / f"part{n}.jsonl", records[n * 4:(n + 1) * 4])
    twice = [records[0] | {"text": "A second document under an id part0 gave."}] if duplicate else []
    write_jsonl(root / "part3.jsonl", [*twice, *records[12:]])
    (root / "part3.jsonl").write_text((root / "part3.jsonl").read_text() + "{not json\n")
    (root / "notes.md").write_text("# Notes\n\nThe Broncos won Super Bowl 50 in Santa Clara.\n")
    return root


def settings_for(tmp_path: Path, corpus: Path, name: str, batch_bytes: int) -> Settings:
    return load_settings(state_dir=tmp_path / name, corpus={"path": corpus, "max_bad_fraction": 0.2},
                         index={"batch_bytes": batch_bytes})


def version_contents(settings: Settings) -> dict[str, Any]:
    """Everything a version serves: catalog rows, rejects, vectors, BM25 and hybrid answers."""
    store = IndexStore(settings.state_dir, settings.chroma.collection)
    manifest = store.require_current()
    catalog = store.catalog(manifest)
    assert catalog is not None
    docs = catalog.db.execute("SELECT doc_id, path, content_hash, chunk_ids FROM documents ORDER BY doc_id")
    got = chroma_of(settings).get_collection(manifest.collection).get(include=["embeddings", "metadatas"])
    vectors = dict(zip(got["ids"], np.asarray(got["embeddings"]).round(5).tolist(), strict=True))
    questions = [q["question"] for q in read_jsonl(SAMPLE_QUESTIONS)[:20]]
    retriever = open_serving_index(settings, build_embedder(settings)).retriever
    return {"hash": manifest.content_hash, "counts": (manifest.n_documents, manifest.n_chunks),
            "documents": docs.fetchall(), "rejects": [(r.where(), r.reason) for r in catalog.all_rejects()],
            "vectors": vectors, "bm25": retriever.lexical.search(questions, 5) if retriever.lexical else None,
            "hybrid": [[c.chunk_id for c in hits] for hits in retriever.retrieve_many(questions, 4)]}


def test_a_reindex_in_batches_builds_the_version_one_batch_builds(tmp_path: Path) -> None:
    corpus = split_corpus(tmp_path / "corpus")
    streamed = build_index(settings_for(tmp_path, corpus, "streamed", batch_bytes=1))  # one file per batch
    whole = build_index(settings_for(tmp_path, corpus, "whole", batch_bytes=10**9))
    assert streamed.plan.files_read == whole.plan.files_read == 5
    first, second = (version_contents(settings_for(tmp_path, corpus, name, 1)) for name in ("streamed", "whole"))
    assert first == second
    twice = read_jsonl(SAMPLE_CORPUS)[0]["id"]
    assert ("part3.jsonl:1", f"duplicate id '{twice}' (the first one in path order is kept)") in first["rejects"]
    assert any("malformed JSON" in reason for _, reason in first["rejects"])
    assert first["counts"] == (17, len(first["vectors"]))  # 16 records and the note
    again = build_index(settings_for(tmp_path, corpus, "streamed", batch_bytes=1))
    assert not again.built and again.plan.files_read == 1  # part3 lost a document to part0's id: read each time


@pytest.mark.parametrize("method", ["lucene", "robertson", "atire", "bm25l", "bm25+"])
def test_the_bm25_builder_scores_as_bm25s_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    method: str) -> None:
    """Built in batches of 5 documents and scored in slices of 300 tokens, the index ranks and scores every query
    as bm25s' own in-memory index of all the texts does."""
    monkeypatch.setattr(lexical_build, "SLICE_TOKENS", 300)
    texts = [r["text"] for r in read_jsonl(SAMPLE_CORPUS)] + ["", "the of and"]
    ids = [f"c{i}" for i in range(len(texts))]
    cfg = BM25Config(method=method)
    builder = lexical_build.LexicalBuilder(tmp_path / "index", cfg)
    for start in range(0, len(texts), 5):
        builder.add(ids[start:start + 5], texts[start:start + 5],
                    [{"even": i % 2 == 0} for i in range(start, min(start + 5, len(texts)))])
    builder.finish()
    ours = LexicalIndex.load(tmp_path / "index")
    reference = bm25s.BM25(k1=cfg.k1, b=cfg.b, method=method)
    stemmer = lexical_build.stemmer_of(cfg)
    reference.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    queries = [q["question"] for q in read_jsonl(SAMPLE_QUESTIONS)[:25]]
    rows, scores = reference.retrieve(bm25s.tokenize(queries, stopwords="en", stemmer=stemmer, show_progress=False),
                                      k=10, show_progress=False, n_threads=1)
    for query, got in enumerate(ours.search(queries, 10)):
        expected = [(ids[int(r)], float(s)) for r, s in zip(rows[query], scores[query], strict=True) if s > 0]
        assert [c for c, _ in got] == [c for c, _ in expected]
        assert np.allclose([s for _, s in got], [s for _, s in expected], rtol=1e-5)
    even = ours.search(queries[:3], 10, {"even": True})
    assert all(int(c[1:]) % 2 == 0 for hits in even for c, _ in hits) and any(even)


def counting(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[str]:
    calls: list[str] = []
    real = getattr(module, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(str(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_unchanged_files_are_skipped_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = split_corpus(tmp_path / "corpus", duplicate=False)
    settings = settings_for(tmp_path, corpus, "state", batch_bytes=1)
    first = build_index(settings)
    reads = counting(monkeypatch, corpus_scan, "read_file")
    hashes = counting(monkeypatch, corpus_scan, "file_sha256")

    again = build_index(settings)
    assert not again.built and again.plan.files_skipped == 5 and (reads, hashes) == ([], [])
    assert again.rejects == first.rejects  # the quarantine report still lists what the skipped files refused

    part1 = corpus / "part1.jsonl"
    os.utime(part1, ns=(part1.stat().st_atime_ns, part1.stat().st_mtime_ns + 10**9))  # touched, same bytes
    touched = build_index(settings)
    assert not touched.built and reads == [] and hashes == [str(part1)]
    build_index(settings)
    assert hashes == [str(part1)]  # its new mtime was recorded: not hashed again

    records = read_jsonl(part1)
    write_jsonl(part1, [*records, {"id": "fresh", "title": "Fresh", "text": "A paragraph added to part1."}])
    (corpus / "notes.md").unlink()
    changed = build_index(settings)
    assert changed.built and [Path(r).name for r in reads] == ["part1.jsonl"] * 2  # the gate's pass, then staging
    assert (changed.plan.added, changed.plan.removed, changed.plan.files_skipped) == (["fresh"], ["notes.md"], 3)
    assert changed.embedded == 1 and changed.copied == changed.manifest.n_chunks - 1
    assert changed.manifest.n_documents == first.manifest.n_documents  # one added, one removed


def test_another_chunking_re_embeds_everything(make_settings: Any) -> None:
    first = build_index(make_settings())
    rechunked = build_index(make_settings(chunking={"chunk_size": 64, "chunk_overlap": 8}))
    assert rechunked.built and rechunked.copied == 0 and rechunked.embedded == rechunked.manifest.n_chunks
    assert rechunked.manifest.n_chunks > first.manifest.n_chunks
    stored = json.loads(IndexStore(make_settings().state_dir, "reasonloop").manifests.joinpath("v0002.json")
                        .read_text())
    assert stored["chunking"]["chunk_size"] == 64 and "documents" not in stored


def test_a_bm25_index_of_an_older_release_asks_for_a_reindex(tmp_path: Path) -> None:
    from reasonloop.errors import InputError

    (tmp_path / "v0001").mkdir()
    (tmp_path / "v0001" / "chunk_ids.json").write_text('{"ids": [], "metadata": [], "config": {}}')
    with pytest.raises(InputError, match=r"older release .* run `reasonloop reindex`"):
        LexicalIndex.load(tmp_path / "v0001")
