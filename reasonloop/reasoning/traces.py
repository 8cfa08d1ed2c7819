"""Every answered question as an MLflow trace (an eval run's Traces tab, or the served endpoint's experiment): a root
span for the question, a retriever span with the chunks and scores, and one span per strategy step (model calls with
their rendered messages, raw reply and token usage; ReAct's searches as tool spans), at the times they happened.

Traces are written after the answers, from the recorded steps, so tracing adds nothing to the calls themselves;
MLflow writes them on background threads and `flush` waits for them."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from reasonloop.redact import redact
from reasonloop.schemas import AnswerRecord, Question, QuestionResult, RetrievedChunk, StepTrace, Verdict

logger = logging.getLogger(__name__)


def documents(chunks: list[RetrievedChunk]) -> list[dict[str, Any]]:
    """Chunks in MLflow's retriever-span document shape (shown as documents in the UI)."""
    return [{"id": c.chunk_id, "page_content": c.text,
             "metadata": {"doc_id": c.doc_id, "rank": c.rank, "score": c.score, "dense_score": c.dense_score,
                          "bm25_score": c.bm25_score}} for c in chunks]


def step_inputs(step: StepTrace) -> Any:
    if step.kind == "tool":
        return {"query": step.input}
    try:
        return {"prompt": step.prompt, "messages": json.loads(step.input)}
    except json.JSONDecodeError:
        return {"prompt": step.prompt, "messages": step.input}


def log_answer_trace(question: Question, retrieved: list[RetrievedChunk], answer: AnswerRecord, experiment_id: str,
                     *, name: str = "question", tags: dict[str, str] | None = None,
                     metadata: dict[str, str] | None = None, verdict: Verdict | None = None,
                     on_start: Callable[[str], None] | None = None) -> str:
    """One answer as a trace in `experiment_id`, its spans at the times recorded; returns the MLflow trace id, also
    given to `on_start` before anything is written (so a write cut short can be found by its id)."""
    import mlflow
    from mlflow.entities import SpanType
    from mlflow.tracing.constant import SpanAttributeKey

    steps = [] if answer.cache_hit else answer.steps  # a reused answer made no call in this run
    start = min((s.started_ns for s in steps), default=time.time_ns())
    end = max((s.started_ns + int(s.latency_s * 1e9) for s in steps), default=start)
    root = mlflow.start_span_no_context(
        name, span_type=SpanType.CHAIN, experiment_id=experiment_id, start_time_ns=start,
        inputs={"question_id": question.id, "question": question.question},
        attributes={"strategy": answer.strategy, "route": answer.route or "", "complexity": answer.complexity,
                    "cache_hit": answer.cache_hit, "prompt": answer.prompt, "model": answer.model},
        tags={"question_id": question.id, "strategy": answer.strategy, **(tags or {})}, metadata=metadata or {})
    if on_start is not None:
        on_start(root.trace_id)
    retrieval = mlflow.start_span_no_context("retrieve", span_type=SpanType.RETRIEVER, parent_span=root,
                                             inputs={"query": question.question}, start_time_ns=start)
    retrieval.end(outputs=documents(retrieved), end_time_ns=start)
    for step in steps:
        span = mlflow.start_span_no_context(
            step.name, span_type=SpanType.TOOL if step.kind == "tool" else SpanType.LLM, parent_span=root,
            inputs=step_inputs(step), start_time_ns=step.started_ns,
            attributes={SpanAttributeKey.CHAT_USAGE: {"input_tokens": step.tokens_in, "output_tokens": step.tokens_out,
                                                      "total_tokens": step.tokens_in + step.tokens_out}}
            if step.kind == "llm" else {})
        if step.error is not None:
            span.set_attribute("error", step.error)
        span.end(outputs=step.output, end_time_ns=step.started_ns + int(step.latency_s * 1e9))
    judged = verdict.model_dump(include={"correct", "correctness", "grounded_fraction", "hallucinated",
                                         "judge_error"}) if verdict else None
    root.end(outputs={"answer": answer.answer, "reasoning": answer.reasoning.model_dump(), "confidence":
                      answer.confidence, "citations": answer.citations, "error": answer.error, "verdict": judged},
             end_time_ns=end)
    return root.trace_id


def log_question_trace(result: QuestionResult, experiment_id: str, run_id: str) -> str:
    """One question of an eval run as a trace linked to `run_id`; returns the trace id."""
    from mlflow.tracing.constant import TraceMetadataKey

    return log_answer_trace(result.question, result.retrieved, result.answer, experiment_id,
                            metadata={TraceMetadataKey.SOURCE_RUN: run_id}, verdict=result.verdict)


def log_question_traces(results: list[QuestionResult], experiment_id: str, run_id: str) -> int:
    """All questions' traces, flushed (written) before returning; returns how many were logged. Best effort: the
    same records are in the run's traces.jsonl, so a tracing failure is a warning, never a failed eval."""
    import mlflow

    logged = 0
    try:
        for result in results:
            log_question_trace(result, experiment_id, run_id)
            logged += 1
        mlflow.flush_trace_async_logging()
    except Exception as exc:  # noqa: BLE001 - see above
        logger.warning("logged %d of %d MLflow traces: %s", logged, len(results), redact(str(exc)))
    return logged
