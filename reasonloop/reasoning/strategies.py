"""How each strategy answers one question: the sequence of model calls (and ReAct's tool calls) it makes, each
recorded as a step, and how the steps become one answer.

- direct / chain_of_thought: one call with the strategy's prompt.
- self_consistency: n samples at a temperature, a majority vote over normalized answers; the winner's share of
  all samples is the confidence.
- react: reason -> act turns with the retriever as the only tool, at most `react.max_steps` model calls.
- verify: a chain-of-thought answer, a self-check against the context, and one revision when the check fails.
- parallel_paths: independent paths (analytical, systematic) over the same context, concurrently, then one
  synthesis call.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, ConfigDict, Field

from reasonloop.reasoning.config import GuardrailsConfig, OptimizeConfig, Price, ReasoningConfig
from reasonloop.reasoning.guardrails import strip_injected
from reasonloop.reasoning.llm_calls import CallError, Endpoint, approx_tokens, describe
from reasonloop.reasoning.prompts import PromptTemplate, format_chunks, quote_data
from reasonloop.reasoning.routing import Plan, route, with_temperature
from reasonloop.reasoning.structured import Method, parse_reply, plain_answer, repair_turn
from reasonloop.recipes import Travels
from reasonloop.redact import redact
from reasonloop.schemas import AnswerRecord, ModelAnswer, Question, ReasoningSteps, RetrievedChunk, StepTrace
from reasonloop.text import normalize_answer

Search = Callable[[str, int], list[RetrievedChunk]]
M = TypeVar("M", bound=BaseModel)


class SelfCheck(BaseModel):
    """The verify prompt's verdict on a draft answer."""

    model_config = ConfigDict(extra="ignore")

    supported: bool
    problems: list[str] = Field(default_factory=list)


class ReactTurn(BaseModel):
    """One ReAct turn: a search, or the finish with the answer schema's fields."""

    model_config = ConfigDict(extra="ignore")

    thought: str = ""
    action: Literal["search", "finish"]
    query: str = ""
    answer: str = ""
    citations: list[str] = Field(default_factory=list)
    confidence: float = Field(default=0.5, ge=0.0, le=1.0)


@dataclass(frozen=True)
class Reasoner(Travels):
    """Everything that answers questions: the model, the prompt of each role (`reasoning`, `direct`, `react`,
    `verify`, `revise`, `synthesize`) and the parallel paths, the strategy config, the price, and ReAct's tool."""

    model: BaseChatModel
    prompts: dict[str, PromptTemplate]
    paths: tuple[PromptTemplate, ...]
    config: ReasoningConfig
    price: Price
    optimize: OptimizeConfig = field(default_factory=OptimizeConfig)
    guardrails: GuardrailsConfig = field(default_factory=GuardrailsConfig)
    count_tokens: Callable[[str], int] = approx_tokens  # context budgets are counted with it
    search: Search | None = None
    search_version: str = ""  # the index version the search tool reads
    structured_output: Method = "prompt"  # how replies' schemas are asked for (structured.py)

    def templates(self) -> list[PromptTemplate]:
        """Every template this reasoner may use, once each."""
        return list({p.ref: p for p in [*self.prompts.values(), *self.paths]}.values())

    def plan(self, question: Question, context: list[RetrievedChunk]) -> Plan:
        strategy, route_, score = route(question, context, self.config)
        model, extra = self.model, ""
        prompts: tuple[PromptTemplate, ...]
        if strategy == "direct":
            prompts = (self.prompts["direct"],)
        elif strategy == "self_consistency":
            sc = self.config.self_consistency
            model, extra = with_temperature(self.model, sc.temperature), f"n={sc.samples}"
            prompts = (self.prompts["reasoning"],)
        elif strategy == "react":
            react = self.config.react
            prompts, extra = (self.prompts["react"],), f"steps={react.max_steps}:k={react.top_k}:{self.search_version}"
        elif strategy == "verify":
            prompts = (self.prompts["reasoning"], self.prompts["verify"], self.prompts["revise"])
        elif strategy == "parallel_paths":
            prompts = (*self.paths, self.prompts["synthesize"])
        else:
            prompts = (self.prompts["reasoning"],)
        return Plan(strategy, model, prompts, route_, score, extra)


@dataclass
class Session:
    """One question being answered: its model calls go through the endpoint's limits and are recorded in order."""

    reasoner: Reasoner
    endpoint: Endpoint
    plan: Plan
    question: Question
    context: list[RetrievedChunk]
    steps: list[StepTrace] = field(default_factory=list)
    searched: list[RetrievedChunk] = field(default_factory=list)
    replies: int = 0  # replies received, and how many did not match their prompt's output schema
    malformed: int = 0
    stripped: int = 0  # sentences the context guardrail removed from search results
    fallbacks: list[StepTrace] = field(default_factory=list)  # steps whose plain-text reply was kept as the answer

    def parse(self, step: StepTrace, schema: type[M]) -> M | str:
        """The step's reply validated as `schema`, or why not (a failed call or a reply of another shape)."""
        if step.error is not None:
            return step.error
        self.replies += 1
        reply = parse_reply(step.output, schema)
        if isinstance(reply, str):
            self.malformed += 1
        return reply

    async def ask_for(self, name: str, prompt: PromptTemplate, schema: type[M], **values: str) -> tuple[M | str,
                                                                                                   StepTrace]:
        """A call whose reply must be `schema`, asked once more with what was wrong when it is not: the reply (or
        why there is none) and the step it came from."""
        step = await self.ask(name, prompt, schema, **values)
        reply = self.parse(step, schema)
        if isinstance(reply, str) and step.error is None:
            step = await self.ask(f"{name}:repair", prompt, schema, (step.output, reply), **values)
            reply = self.parse(step, schema)
        return reply, step

    async def answer_for(self, name: str, prompt: PromptTemplate, **values: str) -> tuple[ModelAnswer | str,
                                                                                          StepTrace]:
        """`ask_for` an answer; a reply that is still not the schema is kept as plain text when it holds any (the
        record says `parse_fallback`): only an empty or unusable reply, or a failed call, fails the question."""
        reply, step = await self.ask_for(name, prompt, ModelAnswer, **values)
        if isinstance(reply, str) and step.error is None and (text := plain_answer(step.output)):
            self.fallbacks.append(step)
            return ModelAnswer(answer=text), step
        return reply, step

    async def ask(self, name: str, prompt: PromptTemplate, schema: type[BaseModel] | None = None,
                  repair: tuple[str, str] | None = None, **values: str) -> StepTrace:
        """One model call, the reply's `schema` asked for the reasoner's way; `repair` (the reply, what was wrong
        with it) continues the conversation with a request to fix it. Never raises (a failed call is a step with
        `error`). Its start is when the request left, after any wait for the endpoint's limits."""
        messages = prompt.to_messages(**values)
        if repair is not None and schema is not None:
            messages += repair_turn(*repair, schema)
        rendered = json.dumps([{"role": m.type, "content": m.content} for m in messages], ensure_ascii=False)
        made = {"name": name, "prompt": prompt.ref, "input": rendered}
        try:
            call = await self.endpoint.call(self.plan.model, messages, schema, self.reasoner.structured_output)
            step = StepTrace(**made, started_ns=call.started_ns, latency_s=call.latency_s, tokens_in=call.tokens_in,
                             tokens_out=call.tokens_out, output=call.text, attempts=call.attempts)
        except CallError as exc:
            step = StepTrace(**made, started_ns=exc.started_ns, latency_s=exc.latency_s, error=redact(str(exc)),
                             attempts=exc.attempts)
        self.steps.append(step)
        return step

    def search(self, query: str) -> list[RetrievedChunk]:
        """ReAct's tool call, recorded as a step; new chunks join the answer's evidence."""
        if self.reasoner.search is None:
            raise ValueError("the react strategy needs a retriever: build the reasoner with an index")
        started_ns, start = time.time_ns(), time.perf_counter()
        hits = self.reasoner.search(query, self.reasoner.config.react.top_k)
        if self.reasoner.guardrails.context:  # observations are context too: instructions in them are not read
            hits, removed = strip_injected(hits)
            self.stripped += removed
        self.steps.append(StepTrace(name="search", kind="tool", started_ns=started_ns,
                                    latency_s=time.perf_counter() - start, input=query,
                                    output=json.dumps([[c.chunk_id, round(c.score, 4)] for c in hits])))
        seen = {c.chunk_id for c in self.searched}
        self.searched += [c for c in hits if c.chunk_id not in seen]
        return hits

    def record(self, answer: ModelAnswer | None, source: StepTrace | None, error: str | None = None,
               **extra: Any) -> AnswerRecord:
        """The question's record: the answer and the step that produced it (its prompt and raw reply), tokens and
        cost summed over every call, latency from the first call's start to the last one's end (queueing for the
        endpoint before the first call is not the strategy's)."""
        calls = [s for s in self.steps if s.kind == "llm"]
        tokens_in, tokens_out = sum(s.tokens_in for s in calls), sum(s.tokens_out for s in calls)
        ends = [s.started_ns + int(s.latency_s * 1e9) for s in self.steps]
        made = {"question_id": self.question.id, "prompt": (source.prompt if source else self.plan.prompts[0].ref),
                "model": str(getattr(self.plan.model, "model_name", "")),
                "tokens_in": tokens_in, "tokens_out": tokens_out,
                "cost_usd": self.reasoner.price.cost_usd(tokens_in, tokens_out),
                "latency_s": (max(ends) - min(s.started_ns for s in self.steps)) / 1e9 if self.steps else 0.0,
                "raw_output": source.output if source else "", "strategy": self.plan.strategy,
                "route": self.plan.route, "complexity": self.plan.complexity, "n_calls": len(calls),
                "steps": self.steps, "searched": self.searched,
                "schema_valid": self.malformed == 0 if self.replies else None,
                "parse_fallback": any(source is step for step in self.fallbacks),
                "guardrails": [f"search: removed {self.stripped} sentence(s) reading as instructions"]
                if self.stripped else []}
        if answer is None:
            return AnswerRecord(**made, error=error or "no answer", **extra)
        return AnswerRecord(**made, answer=answer.answer, reasoning=answer.reasoning, citations=answer.citations,
                            confidence=answer.confidence, **extra)

    def failed(self, error: str, step: StepTrace | None = None) -> AnswerRecord:
        """No answer: why, and the reply that was not one (kept as `raw_output` for the audit)."""
        return self.record(None, step, error)


def vote(answers: list[tuple[ModelAnswer, StepTrace]], n_samples: int) -> tuple[ModelAnswer, StepTrace]:
    """The most frequent normalized answer (equal counts: the earliest), confidence = its share of `n_samples` (a
    failed sample votes for nobody)."""
    votes = Counter(normalize_answer(a.answer) for a, _ in answers)
    winner, count = votes.most_common(1)[0]
    chosen, step = next((a, s) for a, s in answers if normalize_answer(a.answer) == winner)
    return chosen.model_copy(update={"confidence": count / n_samples}), step


def answered(replies: list[tuple[ModelAnswer | str, StepTrace]]) -> tuple[list[tuple[ModelAnswer, StepTrace]],
                                                                           str | None]:
    """The replies that are answers, and the first reason one is not."""
    good = [(a, step) for a, step in replies if not isinstance(a, str)]
    return good, next((a for a, _ in replies if isinstance(a, str)), None)


async def single(s: Session) -> AnswerRecord:
    reply, step = await s.answer_for("answer", s.plan.prompts[0], question=s.question.question,
                                     context=format_chunks(s.context))
    return s.failed(reply, step) if isinstance(reply, str) else s.record(reply, step)


async def self_consistency(s: Session) -> AnswerRecord:
    n = s.reasoner.config.self_consistency.samples
    context = format_chunks(s.context)
    good, error = answered(await asyncio.gather(*(s.answer_for(f"sample:{k}", s.plan.prompts[0],
                                                                question=s.question.question, context=context)
                                                   for k in range(n))))
    if not good:
        return s.failed(error or "no sample answered")
    winner, step = vote(good, n)
    return s.record(winner, step, samples=[a.answer for a, _ in good])


async def react(s: Session) -> AnswerRecord:
    """Turns until the model finishes. Up-front context, when the run gives any, is the first observation; a
    search on the last turn, a failed turn or a finish without an answer fails the question."""
    max_steps, thoughts = s.reasoner.config.react.max_steps, []
    pad = [f"<observation>\n{format_chunks(s.context)}\n</observation>"] if s.context else []
    for turn in range(max_steps):
        reply, step = await s.ask_for(f"step:{turn + 1}", s.plan.prompts[0], ReactTurn, question=s.question.question,
                                      scratchpad="\n".join(pad) or "(nothing yet)", steps_left=str(max_steps - turn))
        if isinstance(reply, str):
            return s.failed(reply, step)
        thoughts.append(reply.thought)
        if reply.action == "finish":
            if not reply.answer.strip():
                return s.failed("react: finished without an answer", step)
            final = ModelAnswer(answer=reply.answer, citations=reply.citations, confidence=reply.confidence,
                                reasoning=ReasoningSteps(problem=s.question.question, steps=thoughts))
            return s.record(final, step)
        if turn == max_steps - 1:
            break
        query = reply.query.strip() or s.question.question
        hits = await asyncio.to_thread(s.search, query)
        pad.append(f"<thought>{quote_data(reply.thought)}</thought>\n<search>{quote_data(query)}</search>\n"
                   f"<observation>\n{format_chunks(hits) or '(no results)'}\n</observation>")
    return s.failed(f"react: no answer within {max_steps} steps (the last turn searched again)")


async def verify(s: Session) -> AnswerRecord:
    draft_prompt, check_prompt, revise_prompt = s.plan.prompts
    context = format_chunks(s.context)
    draft, drafted = await s.answer_for("answer", draft_prompt, question=s.question.question, context=context)
    if isinstance(draft, str):
        return s.failed(draft, drafted)
    check, _ = await s.ask_for("check", check_prompt, SelfCheck, question=s.question.question, context=context,
                               answer=quote_data(draft.answer))
    if isinstance(check, str) or check.supported:  # a check that could not run leaves the draft unverified (None)
        return s.record(draft, drafted, verified=None if isinstance(check, str) else True)
    problems = "\n".join(f"- {quote_data(p)}" for p in check.problems) or "- the check found the draft unsupported"
    revised, revising = await s.answer_for("revise", revise_prompt, question=s.question.question, context=context,
                                           answer=quote_data(draft.answer), problems=problems)
    if isinstance(revised, str):  # the revision failed: keep the draft, flagged as failing its check
        return s.record(draft, drafted, verified=False)
    return s.record(revised, revising, verified=False, revised=True)


async def parallel_paths(s: Session) -> AnswerRecord:
    """The paths concurrently, then the synthesis; if the synthesis fails, the paths' vote answers."""
    *paths, synthesis = s.plan.prompts
    context = format_chunks(s.context)
    good, error = answered(await asyncio.gather(*(s.answer_for(f"path:{p.name}", p, question=s.question.question,
                                                                context=context) for p in paths)))
    if not good:
        return s.failed(error or "no path answered")
    blocks = "\n".join(f'<path name="{step.prompt}">\n{quote_data(a.model_dump_json())}\n</path>'
                        for a, step in good)
    final, step = await s.ask_for("synthesize", synthesis, ModelAnswer, question=s.question.question,
                                  context=context, paths=blocks)
    samples = [a.answer for a, _ in good]
    if isinstance(final, str):
        return s.record(*vote(good, len(paths)), samples=samples)
    return s.record(final, step, samples=samples)


RUNNERS = {"direct": single, "chain_of_thought": single, "self_consistency": self_consistency, "react": react,
           "verify": verify, "parallel_paths": parallel_paths}


async def answer_with(reasoner: Reasoner, endpoint: Endpoint, plan: Plan, question: Question,
                      context: list[RetrievedChunk]) -> AnswerRecord:
    """One question by its plan. Never raises: whatever fails is the record's `error`."""
    session = Session(reasoner, endpoint, plan, question, context)
    try:
        return await RUNNERS[plan.strategy](session)
    except Exception as exc:  # noqa: BLE001 - e.g. the search tool's store went away: this question fails alone
        return session.failed(redact(describe(exc)))
