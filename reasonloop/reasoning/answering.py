"""Answering questions: plan each (strategy, route), fit its context to the strategy's budget, reuse stored answers,
run the rest concurrently within the endpoint's limits, save each answer as it finishes; one at a time for the
served endpoint, the same way."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from reasonloop import progress
from reasonloop.reasoning.answer_store import RecordStore, answer_key
from reasonloop.reasoning.compression import compress_context
from reasonloop.reasoning.config import CallLimits
from reasonloop.reasoning.guardrails import REFUSAL, redact_pii, screen_question, strip_injected
from reasonloop.reasoning.llm_calls import Endpoint, endpoint_for, run_all
from reasonloop.reasoning.routing import Plan
from reasonloop.reasoning.strategies import Reasoner, answer_with
from reasonloop.schemas import AnswerRecord, Question, RetrievedChunk

logger = logging.getLogger(__name__)


def fit_context(reasoner: Reasoner, strategy: str, question: Question,
                context: list[RetrievedChunk]) -> tuple[list[RetrievedChunk], list[str]]:
    """What the strategy reads: nothing when it retrieves for itself, else the context without sentences that read
    as instructions to the model (guardrail) and within its budget; and what the guardrail removed."""
    opt, notes = reasoner.optimize, []
    if strategy in opt.skip_retrieval:
        return [], notes
    if reasoner.guardrails.context:
        context, removed = strip_injected(context)
        notes = [f"context: removed {removed} sentence(s) reading as instructions"] if removed else []
    return compress_context(question.question, context, opt.context_budget.get(strategy),  # type: ignore[call-overload]
                            opt.drop_below_top, reasoner.count_tokens), notes


def refused(question: Question, rules: list[str]) -> AnswerRecord:
    """The input guardrail's answer: no call made; confidence 0 sends it to review."""
    return AnswerRecord(question_id=question.id, answer=REFUSAL, n_calls=0, schema_valid=None,
                        guardrails=[f"input: refused ({', '.join(rules)})"])


def redacted(record: AnswerRecord) -> AnswerRecord:
    """The output guardrail: personal data in the answer replaced by [kind]."""
    text, kinds = redact_pii(record.answer)
    if not kinds:
        return record
    return record.model_copy(update={"answer": text, "guardrails": [*record.guardrails,
                                                                   f"output: redacted {', '.join(kinds)}"]})


@dataclass(frozen=True)
class Prepared:
    """A question ready for its strategy's calls: its plan, the context it reads, and what the guardrail removed."""

    plan: Plan
    context: list[RetrievedChunk]
    notes: list[str]


def prepare(reasoner: Reasoner, question: Question, context: list[RetrievedChunk]) -> Prepared | AnswerRecord:
    """The input guardrail, the plan (strategy, route) and the context fitted to it; a question refused or that cannot
    be planned (e.g. an unknown `metadata.strategy`) is its answer record already, with no call made."""
    if reasoner.guardrails.input and (rules := screen_question(question.question)):
        return refused(question, rules)
    try:
        plan = reasoner.plan(question, context)
    except ValueError as exc:
        return AnswerRecord(question_id=question.id, error=str(exc))
    fitted, notes = fit_context(reasoner, plan.strategy, question, context)
    return Prepared(plan, fitted, notes)


async def finish(reasoner: Reasoner, endpoint: Endpoint, question: Question, prepared: Prepared) -> AnswerRecord:
    """The strategy's calls, then the output guardrail (before anything stores the answer: personal data never
    reaches the cache)."""
    record = await answer_with(reasoner, endpoint, prepared.plan, question, prepared.context)
    if prepared.notes:
        record = record.model_copy(update={"guardrails": [*prepared.notes, *record.guardrails]})
    return redacted(record) if reasoner.guardrails.output_pii else record


async def answer_one(reasoner: Reasoner, endpoint: Endpoint, question: Question,
                     context: list[RetrievedChunk]) -> AnswerRecord:
    """One question answered the way a batch answers each of its questions (the served endpoint's path)."""
    prepared = prepare(reasoner, question, context)
    return prepared if isinstance(prepared, AnswerRecord) else await finish(reasoner, endpoint, question, prepared)


def answer_questions(questions: list[Question], contexts: list[list[RetrievedChunk]], reasoner: Reasoner,
                     limits: CallLimits, store: RecordStore | None = None) -> list[AnswerRecord]:
    """One batch of questions, each by its planned strategy; every model call goes through the endpoint's limits,
    and the client retries transient errors (honouring Retry-After on 429). With a store, stored answers are reused
    (no call, no cost) and a question's answer is saved the moment its strategy finishes."""
    prepared = {i: prepare(reasoner, q, c) for i, (q, c) in enumerate(zip(questions, contexts, strict=True))}
    unplanned = {i: p for i, p in prepared.items() if isinstance(p, AnswerRecord)}
    ready = {i: p for i, p in prepared.items() if isinstance(p, Prepared)}
    keys = {i: answer_key(p.plan, questions[i], p.context) for i, p in ready.items()}
    stored = store.get_many(list(keys.values())) if store is not None else {}
    endpoint = endpoint_for(reasoner.model, limits)

    async def one(i: int) -> AnswerRecord:
        record = await finish(reasoner, endpoint, questions[i], ready[i])
        if store is not None and record.error is None:
            try:
                await asyncio.to_thread(store.put, keys[i], record)  # off the loop: other calls keep flowing
            except Exception as exc:  # noqa: BLE001 - a full disk must not fail the answered batch
                logger.warning("could not save the answer to %s: %s", questions[i].id, exc)
        return record

    todo = [i for i, key in keys.items() if key not in stored]
    done = {**unplanned, **dict(zip(todo, run_all([lambda i=i: one(i) for i in todo]), strict=True))}
    free = {"cache_hit": True, "tokens_in": 0, "tokens_out": 0, "latency_s": 0.0, "cost_usd": 0.0}
    reused = {i: stored[keys[i]].model_copy(update={  # this run's question and plan
        **free, "question_id": questions[i].id, "strategy": ready[i].plan.strategy, "route": ready[i].plan.route,
        "complexity": ready[i].plan.complexity}) for i in keys if i not in done}
    if reasoner.guardrails.output_pii:  # an answer cached while the guardrail was off is redacted on its way out
        reused = {i: redacted(record) for i, record in reused.items()}
    records = [done[i] if i in done else reused[i] for i in range(len(questions))]
    progress.advance("answer questions", len(records))
    return records


def complete_checkpoint(stores: list[RecordStore | None]) -> None:
    """Every answer and verdict of the run is in: drop its checkpoints (the cache, when on, is kept)."""
    for store in stores:
        if store is not None:
            store.complete()
