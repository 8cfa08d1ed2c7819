"""Retrieval for a batch of questions, and retrieval quality on labeled questions (Recall@k, MRR@10, nDCG@10)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from reasonloop.errors import ReasonloopError
from reasonloop.evaluation.config import QualityConfig
from reasonloop.evaluation.metrics import mean, mrr_at_k, ndcg_at_k, recall_at_k, unique_in_order
from reasonloop.reasoning.config import OptimizeConfig, ReasoningConfig
from reasonloop.reasoning.routing import chosen_strategy
from reasonloop.retrieval.retriever import ChunkRetriever
from reasonloop.schemas import Question, RetrievalQuality, RetrievedChunk
from tasks.retry import IO_RETRIES

QUALITY_DEPTH = 10


class QualityGateError(ReasonloopError):
    """A retrieval metric fell under its configured floor."""


def adapt_depth(hits: list[RetrievedChunk], top_k: int, cfg: OptimizeConfig) -> list[RetrievedChunk]:
    """Adaptive retrieval: top-k, widened to `widen_k` when the best cosine is under `widen_below` (weak retrieval:
    the answer may sit lower in the ranking)."""
    cosines = [c.dense_score for c in hits if c.dense_score is not None]
    weak = cfg.widen_below is not None and (not cosines or max(cosines) < cfg.widen_below)
    return hits[: max(top_k, cfg.widen_k)] if weak else hits[:top_k]


@task(name="retrieve-chunks", **IO_RETRIES, cache_policy=NO_CACHE)
def retrieve_chunks(questions: list[Question], retriever: ChunkRetriever, reasoning: ReasoningConfig,
                    optimize: OptimizeConfig) -> list[list[RetrievedChunk]]:
    """Chunks per question, best first (one encoder call and one vector query per batch): none for questions whose
    strategy retrieves for itself, top-k (widened where retrieval is weak) for the others."""
    wanted = [i for i, q in enumerate(questions) if chosen_strategy(q, reasoning) not in optimize.skip_retrieval]
    top_k = retriever.config.top_k
    depth = max(top_k, optimize.widen_k) if optimize.widen_below is not None else top_k
    ranked = dict(zip(wanted, retriever.retrieve_many([questions[i].question for i in wanted], k=depth), strict=True))
    return [adapt_depth(ranked[i], top_k, optimize) if i in ranked else [] for i in range(len(questions))]


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


@task(name="evaluate-retrieval", **IO_RETRIES, cache_policy=NO_CACHE)
def evaluate_retrieval(datasets: dict[str, list[Question]], retriever: ChunkRetriever) -> list[RetrievalQuality]:
    """Retrieval quality per labeled dataset, ranking chunks to depth 10."""
    reports = []
    for name, questions in datasets.items():
        ranked = retriever.retrieve_many([q.question for q in questions], k=QUALITY_DEPTH * 3)
        reports.append(score_rankings(name, questions, [[c.doc_id for c in hits] for hits in ranked]))
    return reports


@task(name="enforce-quality-floors")
def enforce_quality_floors(reports: list[RetrievalQuality], cfg: QualityConfig) -> None:
    """Fail when any dataset's metric is under its floor (the caller has not served the new version yet)."""
    failures = []
    for report in reports:
        floors = cfg.datasets[report.dataset].floors if report.dataset in cfg.datasets else {}
        for metric, floor in floors.items():
            value = getattr(report, metric)
            if value is not None and value < floor:
                failures.append(f"{report.dataset}: {metric} = {value:.4f} < floor {floor}")
    if failures:
        raise QualityGateError("retrieval quality under its floor, the new index version is not served:\n  "
                               + "\n  ".join(failures))
