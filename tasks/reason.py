"""Answering questions with the versioned chain-of-thought prompt, concurrently, one record per question."""

from __future__ import annotations

import asyncio
import logging

from langchain_core.language_models import BaseChatModel
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import ValidationError

from reasonloop import progress
from reasonloop.answer_store import AnswerStore, answer_key
from reasonloop.llm_calls import call_chat, endpoint_of, extract_json, run_bounded
from reasonloop.prompts import PromptTemplate, format_chunks
from reasonloop.redact import redact
from reasonloop.schemas import AnswerRecord, ModelAnswer, Question, RetrievedChunk
from reasonloop.settings import CallLimits, Price
from reasonloop.strategies import Reasoner, combine

logger = logging.getLogger(__name__)


def cost_usd(tokens_in: int, tokens_out: int, price: Price) -> float:
    return (tokens_in * price.input_per_1m + tokens_out * price.output_per_1m) / 1_000_000


async def answer_one(model: BaseChatModel, prompt: PromptTemplate, question: Question,
                     context: list[RetrievedChunk], price: Price) -> AnswerRecord:
    """Never raises: a failed call or an unparseable reply becomes a record with `error` set."""
    made_by = {"question_id": question.id, "model": str(model._identifying_params.get("model_name", "")),
               "prompt": prompt.ref}
    try:
        messages = prompt.to_messages(question=question.question, context=format_chunks(context))
        call = await call_chat(model, messages)
    except Exception as exc:  # noqa: BLE001 - one failed question must not stop the batch
        return AnswerRecord(**made_by, error=redact(f"{type(exc).__name__}: {exc}"))
    usage = {"tokens_in": call.tokens_in, "tokens_out": call.tokens_out, "latency_s": call.latency_s,
             "cost_usd": cost_usd(call.tokens_in, call.tokens_out, price), "raw_output": call.text}
    try:
        parsed = ModelAnswer.model_validate(extract_json(call.text))
    except (ValueError, ValidationError) as exc:
        return AnswerRecord(**made_by, error=f"unparseable answer: {exc}", **usage)
    return AnswerRecord(**made_by, answer=parsed.answer, reasoning=parsed.reasoning,
                        citations=parsed.citations, confidence=parsed.confidence, **usage)


@task(name="answer-questions", cache_policy=NO_CACHE)
def answer_questions(questions: list[Question], contexts: list[list[RetrievedChunk]], reasoner: Reasoner,
                     limits: CallLimits, store: AnswerStore | None = None) -> list[AnswerRecord]:
    """One batch of questions, each by its planned strategy; every model call (self-consistency makes several per
    question) goes through the endpoint's limits, and the client retries transient errors (honouring Retry-After
    on 429). With a store, stored answers are reused (no call, no cost) and a question's answer is saved the
    moment its last call finishes."""
    plans = [reasoner.plan(q, c) for q, c in zip(questions, contexts, strict=True)]
    keys = [answer_key(p.model, p.prompt, q, c, p.identity) for p, q, c in zip(plans, questions, contexts,
                                                                                strict=True)]
    stored = store.get_many(keys) if store is not None else {}
    todo = [i for i, key in enumerate(keys) if key not in stored]
    samples: dict[int, list[AnswerRecord | None]] = {i: [None] * plans[i].calls for i in todo}
    done: dict[int, AnswerRecord] = {}

    async def sample(i: int, k: int) -> None:
        record = await answer_one(plans[i].model, plans[i].prompt, questions[i], contexts[i], reasoner.price)
        samples[i][k] = record  # the shared loop runs one coroutine at a time: no lock needed
        if all(s is not None for s in samples[i]):
            done[i] = combine(plans[i], [s for s in samples[i] if s is not None])
            if store is not None and done[i].error is None:
                try:
                    await asyncio.to_thread(store.put, keys[i], done[i])  # off the loop: other calls keep flowing
                except Exception as exc:  # noqa: BLE001 - a full disk must not fail the answered batch
                    logger.warning("could not save the answer to %s: %s", questions[i].id, exc)

    calls = [lambda i=i, k=k: sample(i, k) for i in todo for k in range(plans[i].calls)]
    run_bounded(calls, limits, endpoint_of(reasoner.model))
    free = {"cache_hit": True, "tokens_in": 0, "tokens_out": 0, "latency_s": 0.0, "cost_usd": 0.0}
    records = [done[i] if i in done else stored[key].model_copy(update={  # this run's question and plan
        **free, "question_id": questions[i].id, "strategy": plans[i].strategy, "route": plans[i].route,
        "complexity": plans[i].complexity}) for i, key in enumerate(keys)]
    progress.advance("answer questions", len(records))
    return records


@task(name="complete-checkpoint", cache_policy=NO_CACHE)
def complete_checkpoint(store: AnswerStore | None) -> None:
    """Every answer of the run is in: drop its checkpoint (the cache, when on, is kept)."""
    if store is not None:
        store.complete()
