"""Retrieval quality on labeled questions (Recall@k, MRR@10, nDCG@10) and the floors a new index version must meet
before it is served."""

from __future__ import annotations

from pathlib import Path

from reasonloop.errors import ReasonloopError
from reasonloop.evaluation.config import QualityConfig
from reasonloop.evaluation.metrics import mean, mrr_at_k, ndcg_at_k, recall_at_k, unique_in_order
from reasonloop.retrieval.record_sets import load_questions
from reasonloop.retrieval.retriever import ChunkRetriever
from reasonloop.schemas import Question, RetrievalQuality

QUALITY_DEPTH = 10


class QualityGateError(ReasonloopError):
    """A retrieval metric fell under its configured floor."""


def load_quality_sets(cfg: QualityConfig) -> dict[str, list[Question]]:
    """The labeled question sets that every new index version is measured on."""
    return {name: load_questions(dataset.questions) for name, dataset in cfg.datasets.items()}


def score_rankings(dataset: str, questions: list[Question], rankings: list[list[str]]) -> RetrievalQuality:
    """Document-level metrics over chunk rankings (a document counts at the rank of its first chunk)."""
    labeled = [(q, unique_in_order(r)) for q, r in zip(questions, rankings, strict=True) if q.gold_doc_ids]

    def avg(values: list[float | None]) -> float | None:
        return mean([v for v in values if v is not None])

    return RetrievalQuality(
        dataset=dataset, n_questions=len(labeled),
        recall_at_1=avg([recall_at_k(r[:1], q.gold_doc_ids) for q, r in labeled]),
        recall_at_5=avg([recall_at_k(r[:5], q.gold_doc_ids) for q, r in labeled]),
        recall_at_10=avg([recall_at_k(r[:10], q.gold_doc_ids) for q, r in labeled]),
        mrr_at_10=avg([mrr_at_k(r, q.gold_doc_ids, 10) for q, r in labeled]),
        ndcg_at_10=avg([ndcg_at_k(r, q.gold_doc_ids, 10) for q, r in labeled]),
    )


def rank_documents(questions: list[Question], retriever: ChunkRetriever) -> list[list[str]]:
    """Each question's ranking as the documents of its chunks, deep enough for the metrics at 10 (run per batch of
    an eval, where the questions' vectors are still in the embedder's memo, on the eval's workers)."""
    ranked = retriever.retrieve_many([q.question for q in questions], k=QUALITY_DEPTH * 3)
    return [[c.doc_id for c in hits] for hits in ranked]


def evaluate_retrieval(datasets: dict[str, list[Question]], retriever: ChunkRetriever) -> list[RetrievalQuality]:
    """Retrieval quality per labeled dataset, ranking chunks to depth 10."""
    return [score_rankings(name, questions, rank_documents(questions, retriever))
            for name, questions in datasets.items()]


def enforce_quality_floors(reports: list[RetrievalQuality], cfg: QualityConfig, corpus: Path) -> list[str]:
    """Fail when a metric of a set that belongs to `corpus` is under its floor (the caller has not served the new
    version yet); returns a note for each set measured but not gating, because it was written for another corpus."""
    failures, notes = [], []
    for report in reports:
        dataset = cfg.datasets.get(report.dataset)
        if dataset is None:
            continue
        key = f"quality.datasets.{report.dataset}"
        if dataset.corpus is not None and dataset.corpus.resolve() != corpus.resolve():
            notes.append(f"{key} ({dataset.questions}) was written for {dataset.corpus}, not {corpus}: measured and "
                         f"logged, not gating; add a labeled set of this corpus under quality.datasets (questions, "
                         f"floors, corpus: {corpus}) to gate it")
            continue
        for metric, floor in dataset.floors.items():
            value = getattr(report, metric)
            if value is not None and value < floor:
                failures.append(f"{report.dataset} ({dataset.questions}): {metric} = {value:.4f} < floor {floor} "
                                f"({key}.floors.{metric})")
    if failures:
        raise QualityGateError("retrieval quality under its floor, the new index version is not served:\n  "
                               + "\n  ".join(failures) + "\nFix retrieval, lower the floor, or, if the set was "
                               f"written for another corpus, give it `corpus:` (this one is {corpus})")
    return notes
