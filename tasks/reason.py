"""Answering questions with the versioned chain-of-thought prompt, concurrently, one record per question."""

from __future__ import annotations

import asyncio

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


async def answer_and_keep(model: BaseChatModel, prompt: PromptTemplate, question: Question,
                          context: list[RetrievedChunk], price: Price, store: AnswerStore, key: str) -> AnswerRecord:
    """Answer, then save the answer at once unless it failed (failures are retried by the next run)."""
    record = await answer_one(model, prompt, question, context, price)
    if record.error is None:
        await asyncio.to_thread(store.put, key, record)  # off the event loop: other calls keep flowing
    return record


@task(name="answer-questions", cache_policy=NO_CACHE)
def answer_questions(questions: list[Question], contexts: list[list[RetrievedChunk]], model: BaseChatModel,
                     prompt: PromptTemplate, price: Price, limits: CallLimits,
                     store: AnswerStore | None = None) -> list[AnswerRecord]:
    """One batch of questions within the endpoint's call limits (the client retries transient errors, honouring
    Retry-After on 429). With a store, stored answers are reused (no call, no cost) and new ones saved as they
    finish."""
    pairs = list(zip(questions, contexts, strict=True))
    if store is None:
        records = run_bounded([lambda q=q, c=c: answer_one(model, prompt, q, c, price) for q, c in pairs], limits,
                              endpoint_of(model))
    else:
        keys = [answer_key(model, prompt, q, c) for q, c in pairs]
        stored = store.get_many(keys)
        todo = [(key, q, c) for key, (q, c) in zip(keys, pairs, strict=True) if key not in stored]
        fresh = dict(zip([key for key, _, _ in todo], run_bounded(
            [lambda k=k, q=q, c=c: answer_and_keep(model, prompt, q, c, price, store, k) for k, q, c in todo],
            limits, endpoint_of(model)), strict=True))
        reused = {key: record.model_copy(update={"cache_hit": True, "tokens_in": 0, "tokens_out": 0,
                                                 "latency_s": 0.0, "cost_usd": 0.0})
                  for key, record in stored.items()}
        records = [fresh[key] if key in fresh else reused[key] for key in keys]
    progress.advance("answer questions", len(records))
    return records
