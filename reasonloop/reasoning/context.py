"""What each question reads: retrieval for a batch (none for strategies that search for themselves, top-k widened
where retrieval is weak)."""

from __future__ import annotations

from reasonloop.reasoning.config import OptimizeConfig, ReasoningConfig
from reasonloop.reasoning.routing import chosen_strategy
from reasonloop.retrieval.retriever import ChunkRetriever
from reasonloop.schemas import Question, RetrievedChunk


def adapt_depth(hits: list[RetrievedChunk], top_k: int, cfg: OptimizeConfig) -> list[RetrievedChunk]:
    """Adaptive retrieval: top-k, widened to `widen_k` when the best cosine is under `widen_below` (weak retrieval:
    the answer may sit lower in the ranking)."""
    cosines = [c.dense_score for c in hits if c.dense_score is not None]
    weak = cfg.widen_below is not None and (not cosines or max(cosines) < cfg.widen_below)
    return hits[: max(top_k, cfg.widen_k)] if weak else hits[:top_k]


def retrieve_chunks(questions: list[Question], retriever: ChunkRetriever, reasoning: ReasoningConfig,
                    optimize: OptimizeConfig) -> list[list[RetrievedChunk]]:
    """Chunks per question, best first (one encoder call and one vector query per batch): none for questions whose
    strategy retrieves for itself, top-k (widened where retrieval is weak) for the others."""
    wanted = [i for i, q in enumerate(questions) if chosen_strategy(q, reasoning) not in optimize.skip_retrieval]
    top_k = retriever.config.top_k
    depth = max(top_k, optimize.widen_k) if optimize.widen_below is not None else top_k
    ranked = dict(zip(wanted, retriever.retrieve_many([questions[i].question for i in wanted], k=depth), strict=True))
    return [adapt_depth(ranked[i], top_k, optimize) if i in ranked else [] for i in range(len(questions))]
