"""Live traffic read back from MLflow: the traces of a time window (the served endpoint's, or any app's instrumented
with MLflow tracing) as the per-question results every flow understands, with what users said about them (the
traces' assessments: a rating, a correction).

A trace becomes a question (its root span's input: a `question`, `query`, `input` or `prompt` field, the last user
message of `messages`, or a plain string), an answer (its root span's output, or the completion of an OpenAI-format
reply), the chunks its retriever spans returned, and the tokens of its LLM spans. A trace without a question or an
answer is counted and skipped, never guessed at."""

from __future__ import annotations

import time
from typing import Any

from reasonloop.evaluation.config import LiveConfig
from reasonloop.evaluation.live_canary import LiveCanary
from reasonloop.monitoring.tracking import Tracker
from reasonloop.reasoning.structured import parse_reply
from reasonloop.schemas import (
    AnswerRecord,
    LiveRecord,
    LiveWindow,
    ModelAnswer,
    Question,
    QuestionResult,
    ReasoningSteps,
    RetrievedChunk,
)
from reasonloop.text import parse_duration

RATING, CORRECTION = "user_rating", "expected_response"
QUESTION_KEYS = ("question", "query", "input", "prompt", "user_input")
ANSWER_KEYS = ("answer", "output", "response", "content", "text", "result")


def _text(value: Any, keys: tuple[str, ...]) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, dict):
        for key in keys:
            if isinstance(value.get(key), str) and value[key].strip():
                return str(value[key]).strip()
        if isinstance(value.get("messages"), list):  # a chat request: its last user message
            users = [m for m in value["messages"] if isinstance(m, dict) and m.get("role") in ("user", "human")]
            return _text(users[-1].get("content"), keys) if users else None
        if isinstance(value.get("choices"), list) and value["choices"]:  # an OpenAI-format completion
            return _text(value["choices"][0].get("message", {}), ("content",))
    if isinstance(value, list):  # content parts
        parts = [p.get("text", "") for p in value if isinstance(p, dict) and p.get("type") == "text"]
        return " ".join(parts).strip() or None
    return None


def _chunks(spans: list[Any]) -> list[RetrievedChunk]:
    found: list[RetrievedChunk] = []
    for span in spans:
        if span.span_type != "RETRIEVER" or not isinstance(span.outputs, list):
            continue
        for document in span.outputs:
            if not isinstance(document, dict) or not isinstance(document.get("page_content"), str):
                continue
            meta = document.get("metadata") or {}
            chunk_id = str(document.get("id") or meta.get("chunk_id") or f"{span.span_id}#{len(found)}")
            found.append(RetrievedChunk(chunk_id=chunk_id, doc_id=str(meta.get("doc_id") or chunk_id),
                                        text=document["page_content"], score=float(meta.get("score") or 0.0),
                                        dense_score=meta.get("dense_score"), bm25_score=meta.get("bm25_score"),
                                        rank=len(found) + 1))
    return found


def _usage(spans: list[Any]) -> tuple[int, int]:
    tokens_in = tokens_out = 0
    for span in spans:
        usage = span.get_attribute("mlflow.chat.tokenUsage") if span.span_type in ("LLM", "CHAT_MODEL") else None
        if isinstance(usage, dict):
            tokens_in += int(usage.get("input_tokens", 0))
            tokens_out += int(usage.get("output_tokens", 0))
    return tokens_in, tokens_out


def _reasoning(outputs: Any, spans: list[Any]) -> ReasoningSteps | None:
    """The chain of thought: the root span's `reasoning` (the served endpoint's traces), else the last model call's
    reply when it is the reasoning prompts' JSON."""
    if isinstance(outputs, dict) and isinstance(outputs.get("reasoning"), dict):
        return ReasoningSteps.model_validate(outputs["reasoning"])
    replies = [s.outputs for s in spans if s.span_type in ("LLM", "CHAT_MODEL") and isinstance(s.outputs, str)]
    parsed = parse_reply(replies[-1], ModelAnswer) if replies else None
    return parsed.reasoning if isinstance(parsed, ModelAnswer) else None


def to_record(trace: Any) -> LiveRecord | None:
    """A trace as live traffic; None when it has no recognisable question or answer. A failed request (an `error`
    in its output) is kept with an empty answer, so error rates count it."""
    spans = trace.data.spans
    root = next((s for s in spans if s.parent_id is None), None)
    if root is None:
        return None
    question = _text(root.inputs, QUESTION_KEYS)
    outputs = root.outputs
    error = outputs.get("error") if isinstance(outputs, dict) else None
    answer = _text(outputs, ANSWER_KEYS) or ("" if error else None)
    if not question or answer is None:
        return None
    info, tags = trace.info, trace.info.tags
    trace_id = tags.get("reasonloop.trace_id") or info.trace_id
    reasoning = _reasoning(outputs, spans)
    tokens_in, tokens_out = _usage(spans)
    attributes = root.attributes or {}
    record = AnswerRecord(
        question_id=trace_id, answer=answer, model=str(attributes.get("model") or ""),
        prompt=str(attributes.get("prompt") or ""), strategy=str(attributes.get("strategy") or "unknown"),
        route=attributes.get("route") or None, tokens_in=tokens_in, tokens_out=tokens_out,
        latency_s=(info.execution_duration or 0) / 1000,
        citations=outputs.get("citations", []) if isinstance(outputs, dict) else [],
        confidence=float(outputs.get("confidence", 0.0)) if isinstance(outputs, dict) else 0.0,
        error=error,
        **({"reasoning": reasoning} if reasoning else {}))
    rating = correction = comment = None
    for assessment in info.assessments:
        if assessment.name == RATING and assessment.feedback is not None:
            rating, comment = bool(assessment.feedback.value), assessment.rationale
        elif assessment.name == CORRECTION and assessment.expectation is not None:
            correction = str(assessment.expectation.value)
    metadata = info.trace_metadata or {}
    return LiveRecord(result=QuestionResult(question=Question(id=trace_id, question=question), retrieved=_chunks(spans),
                                            answer=record),
                      mlflow_trace_id=info.trace_id, timestamp_ms=info.timestamp_ms, arm=tags.get("reasonloop.arm",
                                                                                                  "production"),
                      source=tags.get("reasonloop.source", "app"), session_id=metadata.get("mlflow.trace.session"),
                      user_id=metadata.get("mlflow.trace.user"), rating=rating, correction=correction,
                      comment=comment)


def read_live(tracker: Tracker, experiments: list[str], since_ms: int, until_ms: int, limit: int,
              where: str | None = None) -> LiveWindow:
    """The traces of the named experiments with since_ms < timestamp <= until_ms (at most `limit`, newest kept),
    oldest first; `where` adds an MLflow filter (e.g. a tag). Experiments that do not exist hold nothing."""
    client = tracker.client()
    ids = [e.experiment_id for name in experiments if (e := client.get_experiment_by_name(name)) is not None]
    window = f"trace.timestamp_ms > {since_ms} AND trace.timestamp_ms <= {until_ms}"
    traces: list[Any] = []
    token = None
    while ids and len(traces) < limit:
        page = client.search_traces(locations=ids, filter_string=f"{window} AND {where}" if where else window,
                                    max_results=min(500, limit - len(traces)), order_by=["timestamp_ms DESC"],
                                    page_token=token)
        traces += list(page)
        token = page.token
        if not token:
            break
    records = [r for t in traces if (r := to_record(t)) is not None]
    return LiveWindow(since_ms=since_ms, until_ms=until_ms, experiments=experiments, skipped=len(traces) - len(records),
                      records=sorted(records, key=lambda r: r.timestamp_ms))


def live_experiments(cfg: LiveConfig, tracker: Tracker) -> list[str]:
    """The experiments whose traces are live traffic: the configured ones, else the served endpoint's."""
    return cfg.experiments or [tracker.experiment_name("live")]


def read_live_window(tracker: Tracker, cfg: LiveConfig, since: str, where: str | None = None,
                     until_ms: int | None = None) -> LiveWindow:
    """The live traffic of the last `since` (e.g. 24h) up to now (or `until_ms`)."""
    until = until_ms if until_ms is not None else int(time.time() * 1000)
    return read_live(tracker, live_experiments(cfg, tracker), until - int(parse_duration(since) * 1000), until,
                     cfg.max_traces, where)


def read_canary_traffic(tracker: Tracker, cfg: LiveConfig, canary: LiveCanary) -> LiveWindow:
    """What a live canary has served: the traces tagged with its id since it started, both arms."""
    return read_live(tracker, live_experiments(cfg, tracker), canary.started_ms - 1, int(time.time() * 1000),
                     cfg.max_traces, where=f"tags.`reasonloop.canary_id` = '{canary.id}'")
