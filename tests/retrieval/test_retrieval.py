"""The one retriever: dense, BM25 and hybrid modes over a real index version, metadata filters, RRF, the LangChain
interface, and the `index` CLI over real versions."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from reasonloop.cli import app
from reasonloop.providers import ServingIndex, build_embedder, open_serving_index
from reasonloop.retrieval.retriever import ChunkRetriever, fuse, rrf_fuse, zscore_fuse
from reasonloop.settings import Settings, load_settings

from ..conftest import SAMPLE_CORPUS, SAMPLE_QUESTIONS, read_jsonl, write_jsonl
from ..support.indexing import build_index

TESLA = "Nikola Tesla"
QUERY = "Which network broadcast Super Bowl 50 in the U.S.?"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """One index version of 12 sample paragraphs (two articles), shared by this module's read-only tests."""
    root = tmp_path_factory.mktemp("retrieval")
    corpus = write_jsonl(root / "corpus" / "c.jsonl", read_jsonl(SAMPLE_CORPUS)[:12]).parent
    settings = load_settings(state_dir=root / "state", corpus={"path": corpus})
    build_index(settings)
    return settings


@pytest.fixture(scope="module")
def index(settings: Settings) -> ServingIndex:
    return open_serving_index(settings, build_embedder(settings))


def in_mode(index: ServingIndex, mode: str, **config: Any) -> ChunkRetriever:
    return index.retriever.model_copy(update={"config": index.retriever.config.model_copy(update={"mode": mode,
                                                                                                 **config})})


def test_rrf_weights_and_ties() -> None:
    assert rrf_fuse([["a", "b"], ["b", "c"]], [1.0, 1.0], 60)[0][0] == "b"  # in both lists
    assert rrf_fuse([["a", "b"], ["b", "a"]], [1.0, 1.0], 60)[0][0] == "a"  # a tie goes to the smaller id
    assert rrf_fuse([["a", "b"], ["b", "a"]], [2.0, 1.0], 60)[0][0] == "a"  # the heavier list wins
    assert rrf_fuse([["a", "b"], ["b", "a"]], [1.0, 2.0], 60)[0][0] == "b"
    scores = dict(rrf_fuse([["a"], []], [0.5, 1.0], 10))
    assert scores == {"a": pytest.approx(0.5 / 11)}


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_each_mode_finds_the_paragraph_a_question_is_about(index: ServingIndex, mode: str) -> None:
    hits = in_mode(index, mode).retrieve_many(["Which network broadcast Super Bowl 50 in the U.S.?",
                                               "What was the name of Tesla's older brother?"], k=3)
    assert [h[0].doc_id for h in hits] == ["Super_Bowl_50#3", "Nikola_Tesla#5"]
    for ranked in hits:
        assert [c.rank for c in ranked] == [1, 2, 3] and len({c.chunk_id for c in ranked}) == 3
        assert all(a.score >= b.score for a, b in zip(ranked, ranked[1:], strict=False))
        assert all(c.text and c.title for c in ranked)


@pytest.mark.parametrize("fusion", ["zscore", "rrf"])
def test_hybrid_carries_both_scores_and_ranks_by_their_fusion(index: ServingIndex, fusion: str) -> None:
    retriever = in_mode(index, "hybrid", fusion=fusion)
    top = retriever.retrieve_many([QUERY], k=3)[0]
    assert top[0].dense_score is not None and top[0].bm25_score is not None  # found by both
    depth = retriever.config.candidates
    dense_hits = in_mode(index, "dense").retrieve_many([QUERY], k=depth)[0]
    lexical_hits = in_mode(index, "bm25").retrieve_many([QUERY], k=depth)[0]
    expected = fuse([(c.chunk_id, c.score) for c in dense_hits], [(c.chunk_id, c.score) for c in lexical_hits],
                    retriever.config, depth)[:3]
    assert [(c.chunk_id, c.score) for c in top] == [(cid, pytest.approx(s)) for cid, s in expected]


def test_dense_scores_are_the_encoders_cosine(index: ServingIndex) -> None:
    """Chroma's cosine distance, turned into a score, equals the dot product of the normalised vectors."""
    query = "When was Tesla born?"
    hits = in_mode(index, "dense").retrieve_many([query], k=5)[0]
    stored = index.collection.get(ids=[h.chunk_id for h in hits], include=["embeddings"])
    by_id = dict(zip(stored["ids"], np.asarray(stored["embeddings"]), strict=True))
    q = index.retriever.embedder.embed([query])[0]
    for hit in hits:
        assert hit.score == pytest.approx(float(q @ by_id[hit.chunk_id]), abs=1e-4)


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_filters_restrict_every_mode(index: ServingIndex, mode: str) -> None:
    retriever = in_mode(index, mode)
    query = ["Which network broadcast Super Bowl 50 in the U.S.?"]
    only_tesla = retriever.retrieve_many(query, k=4, filters={"title": TESLA})[0]
    assert only_tesla and all(c.title == TESLA for c in only_tesla)
    one_doc = retriever.retrieve_many(query, k=4, filters={"title": TESLA, "doc_id": "Nikola_Tesla#2"})[0]
    assert [c.doc_id for c in one_doc] == ["Nikola_Tesla#2"] or (mode == "bm25" and one_doc == [])
    assert retriever.retrieve_many(query, k=4, filters={"title": "No such article"})[0] == []


def test_the_langchain_interface_applies_the_retrievers_filters(index: ServingIndex) -> None:
    retriever = in_mode(index, "hybrid").model_copy(update={"filters": {"title": TESLA}})
    docs = retriever.invoke("Who was the Super Bowl 50 MVP?")
    assert len(docs) == retriever.config.top_k
    assert all(d.metadata["title"] == TESLA and d.id == d.metadata["chunk_id"] for d in docs)
    assert [d.metadata["rank"] for d in docs] == list(range(1, len(docs) + 1))


@pytest.fixture
def cli_state(tmp_path: Path) -> Iterator[Path]:
    saved = dict(os.environ)
    corpus = write_jsonl(tmp_path / "corpus" / "c.jsonl", read_jsonl(SAMPLE_CORPUS)[:3]).parent
    os.environ.update({"REASONLOOP_STATE_DIR": str(tmp_path / "state"), "REASONLOOP_CORPUS__PATH": str(corpus)})
    yield tmp_path / "state"
    os.environ.clear()
    os.environ.update(saved)


def test_index_cli_status_and_rollback_over_real_versions(cli_state: Path) -> None:
    runner = CliRunner()
    assert "no index yet" in runner.invoke(app, ["index", "status"]).output
    settings = load_settings()
    build_index(settings)
    build_index(settings, full=True)
    status = runner.invoke(app, ["index", "status"], terminal_width=200)
    rows = [line.split("│")[1:3] for line in status.output.splitlines() if line.count("│") > 3]
    assert status.exit_code == 0 and [[v.strip() for v in r] for r in rows] == [["2", "yes"], ["1", ""]], \
        status.output

    back = runner.invoke(app, ["index", "rollback"])
    assert back.exit_code == 0 and "serving index version 1" in back.output, back.output
    assert open_serving_index(settings, build_embedder(settings)).manifest.version == 1
    forward = runner.invoke(app, ["index", "rollback", "--to", "2"])
    assert forward.exit_code == 0 and "serving index version 2" in forward.output
    missing = runner.invoke(app, ["index", "rollback", "--to", "9"])
    assert missing.exit_code == 1 and "9" in missing.output


def test_zscore_fusion_keeps_score_gaps_that_rrf_drops() -> None:
    dense = [("a", 0.90), ("b", 0.50), ("c", 0.49)]  # a is far ahead in dense ...
    lexical = [("b", 10.0), ("c", 9.95), ("a", 9.9), ("d", 1.0), ("e", 0.5)]  # ... and a hair behind in BM25
    assert zscore_fuse([dense, lexical], [1.0, 1.0], [None, None])[0][0] == "a"
    assert rrf_fuse([[c for c, _ in dense], [c for c, _ in lexical]], [1.0, 1.0], 60)[0][0] == "b"  # ranks only
    fused = dict(zscore_fuse([dense, lexical], [1.0, 1.0], [None, None]))
    assert set(fused) == {"a", "b", "c", "d", "e"} and fused["d"] < fused["c"] < fused["b"]
    assert zscore_fuse([dense, lexical], [0.0, 1.0], [None, None])[0][0] == "b"  # weights select the list
    assert zscore_fuse([[("x", 1.0)], []], [1.0, 1.0], [None, None]) == [("x", 0.0)]  # no spread, no crash


def test_zscore_fusion_keeps_the_signal_of_a_short_bm25_list() -> None:
    """A BM25 list shorter than asked for holds every non-zero hit: the rest score 0, a known floor."""
    dense = [("a", 0.90), ("b", 0.50), ("c", 0.49)]
    assert zscore_fuse([dense, [("c", 12.0)]], [1.0, 1.0], [None, 0.0])[1][0] == "c"  # lifted above b
    close = dict(zscore_fuse([[], [("x", 12.0), ("y", 11.9)]], [1.0, 1.0], [None, 0.0]))
    assert close["x"] - close["y"] < 0.05  # near scores stay near (no forced +1/-1)
    with pytest.raises(ValueError, match="non-finite"):
        zscore_fuse([[("x", float("nan"))]], [1.0], [None])


def test_a_batch_of_5000_questions_is_one_call_with_the_results_of_one_query_each(index: ServingIndex) -> None:
    from reasonloop.schemas import Question

    questions = [q.question for q in (Question.model_validate(r) for r in read_jsonl(SAMPLE_QUESTIONS))]
    queries = [f"{questions[i % len(questions)]} ({i})" for i in range(5000)]  # 5,000 distinct questions
    for mode in ("dense", "hybrid"):
        retriever = in_mode(index, mode, candidates=50)
        hits = retriever.retrieve_many(queries, k=5)  # 5,000 x 12 chunks: past Chroma's variables per statement
        assert len(hits) == 5000 and all(len(h) == 5 for h in hits)
        for i in (0, 1234, 4999):
            alone = retriever.retrieve_many([queries[i]], k=5)[0]
            assert [c.chunk_id for c in hits[i]] == [c.chunk_id for c in alone]
