"""Our retrieval metrics against a maintained IR-metrics library (ranx), on rankings with ties of nothing."""

from __future__ import annotations

import random

import pytest

from reasonloop.evaluation.retrieval_quality import score_rankings
from reasonloop.schemas import Question


def test_metrics_match_ranx() -> None:
    from ranx import Qrels, Run, evaluate

    rng = random.Random(7)
    docs = [f"d{i}" for i in range(40)]
    questions, rankings, qrels, run = [], [], {}, {}
    for q in range(60):
        gold = rng.sample(docs, rng.choice([1, 1, 2]))
        ranking = rng.sample(docs, 15)
        questions.append(Question(id=f"q{q}", question="?", reference="r", gold_doc_ids=gold))
        rankings.append(ranking)
        qrels[f"q{q}"] = {g: 1 for g in gold}
        run[f"q{q}"] = {d: float(100 - rank) for rank, d in enumerate(ranking)}
    ours = score_rankings("synthetic", questions, rankings)
    theirs = evaluate(Qrels(qrels), Run(run), ["recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"])
    assert ours.recall_at_1 == pytest.approx(theirs["recall@1"], abs=1e-9)
    assert ours.recall_at_5 == pytest.approx(theirs["recall@5"], abs=1e-9)
    assert ours.recall_at_10 == pytest.approx(theirs["recall@10"], abs=1e-9)
    assert ours.mrr_at_10 == pytest.approx(theirs["mrr@10"], abs=1e-9)
    assert ours.ndcg_at_10 == pytest.approx(theirs["ndcg@10"], abs=1e-9)


def test_chunk_rankings_count_a_document_once() -> None:
    q = Question(id="q", question="?", reference="r", gold_doc_ids=["b"])
    report = score_rankings("x", [q], [["a", "a", "a", "b"]])  # b is the 2nd distinct document
    assert report.mrr_at_10 == 0.5 and report.recall_at_1 == 0.0 and report.recall_at_5 == 1.0
