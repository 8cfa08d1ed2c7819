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
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reasonloop.llm_calls import Endpoint, extract_json
from reasonloop.metrics import normalize_answer
from reasonloop.prompts import PromptTemplate, format_chunks, quote_data
from reasonloop.redact import redact
from reasonloop.routing import Plan, route, with_temperature
from reasonloop.schemas import AnswerRecord, ModelAnswer, Question, ReasoningSteps, RetrievedChunk, StepTrace
from reasonloop.settings import OptimizeConfig, Price, ReasoningConfig

Search = Callable[[str, int], list[RetrievedChunk]]


def approx_tokens(text: str) -> int:
    return len(text) // 4


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
class Reasoner:
    """Everything that answers questions: the model, the prompt of each role (`reasoning`, `direct`, `react`,
    `verify`, `revise`, `synthesize`) and the parallel paths, the strategy config, the price, and ReAct's tool."""

    model: BaseChatModel
    prompts: dict[str, PromptTemplate]
    paths: tuple[PromptTemplate, ...]
    config: ReasoningConfig
    price: Price
    optimize: OptimizeConfig = field(default_factory=OptimizeConfig)
    count_tokens: Callable[[str], int] = approx_tokens  # context budgets are counted with it
    search: Search | None = None
    search_version: str = ""  # the index version the search tool reads

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


def cost_usd(tokens_in: int, tokens_out: int, price: Price) -> float:
    return (tokens_in * price.input_per_1m + tokens_out * price.output_per_1m) / 1_000_000


def parse(step: StepTrace, schema: type[BaseModel]) -> tuple[Any, str | None]:
    """(the validated reply, None) or (None, why not): a failed call or an unparseable reply."""
    if step.error is not None:
        return None, step.error
    try:
        return schema.model_validate(extract_json(step.output)), None
    except (ValueError, ValidationError) as exc:
        return None, f"unparseable reply to {step.name}: {exc}"


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
    started: float = field(default_factory=time.perf_counter)

    async def ask(self, name: str, prompt: PromptTemplate, **values: str) -> StepTrace:
        """One model call; never raises (a failed call is a step with `error`)."""
        messages = prompt.to_messages(**values)
        rendered = json.dumps([{"role": m.type, "content": m.content} for m in messages], ensure_ascii=False)
        started_ns, start = time.time_ns(), time.perf_counter()
        try:
            call = await self.endpoint.call(self.plan.model, messages)
            step = StepTrace(name=name, prompt=prompt.ref, started_ns=started_ns, latency_s=call.latency_s,
                             tokens_in=call.tokens_in, tokens_out=call.tokens_out, input=rendered, output=call.text)
        except Exception as exc:  # noqa: BLE001 - one failed call must not stop the batch
            step = StepTrace(name=name, prompt=prompt.ref, started_ns=started_ns,
                             latency_s=time.perf_counter() - start, input=rendered,
                             error=redact(f"{type(exc).__name__}: {exc}"))
        self.steps.append(step)
        return step

    def search(self, query: str) -> list[RetrievedChunk]:
        """ReAct's tool call, recorded as a step; new chunks join the answer's evidence."""
        if self.reasoner.search is None:
            raise ValueError("the react strategy needs a retriever: build the reasoner with an index")
        started_ns, start = time.time_ns(), time.perf_counter()
        hits = self.reasoner.search(query, self.reasoner.config.react.top_k)
        self.steps.append(StepTrace(name="search", kind="tool", started_ns=started_ns,
                                    latency_s=time.perf_counter() - start, input=query,
                                    output=json.dumps([[c.chunk_id, round(c.score, 4)] for c in hits])))
        seen = {c.chunk_id for c in self.searched}
        self.searched += [c for c in hits if c.chunk_id not in seen]
        return hits

    def record(self, answer: ModelAnswer | None, error: str | None, **extra: Any) -> AnswerRecord:
        """The question's answer from what its steps produced: tokens and cost summed over the calls, latency the
        wall time of the whole strategy."""
        calls = [s for s in self.steps if s.kind == "llm"]
        tokens_in, tokens_out = sum(s.tokens_in for s in calls), sum(s.tokens_out for s in calls)
        final = next((s for s in reversed(calls) if s.error is None), None)
        made = {"question_id": self.question.id, "prompt": self.plan.prompts[-1].ref if answer else "",
                "model": str(self.plan.model._identifying_params.get("model_name", "")),
                "tokens_in": tokens_in, "tokens_out": tokens_out,
                "cost_usd": cost_usd(tokens_in, tokens_out, self.reasoner.price),
                "latency_s": time.perf_counter() - self.started, "raw_output": final.output if final else "",
                "strategy": self.plan.strategy, "route": self.plan.route, "complexity": self.plan.complexity,
                "n_calls": len(calls), "steps": self.steps, "searched": self.searched}
        if answer is None:
            return AnswerRecord(**{**made, "prompt": self.plan.prompts[0].ref}, error=error, **extra)
        return AnswerRecord(**made, answer=answer.answer, reasoning=answer.reasoning, citations=answer.citations,
                            confidence=answer.confidence, **extra)


def vote(answers: list[ModelAnswer], n_samples: int) -> tuple[ModelAnswer, list[str]]:
    """The most frequent normalized answer (equal counts: the earliest), confidence = its share of all samples (a
    failed sample votes for nobody)."""
    votes = Counter(normalize_answer(a.answer) for a in answers)
    winner, count = votes.most_common(1)[0]
    chosen = next(a for a in answers if normalize_answer(a.answer) == winner)
    return chosen.model_copy(update={"confidence": count / n_samples}), [a.answer for a in answers]


async def single(s: Session) -> AnswerRecord:
    step = await s.ask("answer", s.plan.prompts[0], question=s.question.question, context=format_chunks(s.context))
    return s.record(*parse(step, ModelAnswer))


async def self_consistency(s: Session) -> AnswerRecord:
    n = s.reasoner.config.self_consistency.samples
    context = format_chunks(s.context)
    steps = await asyncio.gather(*(s.ask(f"sample:{k}", s.plan.prompts[0], question=s.question.question,
                                         context=context) for k in range(n)))
    parsed = [parse(step, ModelAnswer) for step in steps]
    answers = [a for a, _ in parsed if a is not None]
    if not answers:
        return s.record(None, parsed[0][1])
    winner, samples = vote(answers, n)
    return s.record(winner, None, samples=samples)


async def react(s: Session) -> AnswerRecord:
    """Turns until the model finishes; a search on the last turn, or a failed turn, fails the question."""
    max_steps, pad, thoughts = s.reasoner.config.react.max_steps, [], []
    for turn in range(max_steps):
        step = await s.ask(f"step:{turn + 1}", s.plan.prompts[0], question=s.question.question,
                           scratchpad="\n".join(pad) or "(nothing yet)", steps_left=str(max_steps - turn))
        reply, error = parse(step, ReactTurn)
        if reply is None:
            return s.record(None, error)
        thoughts.append(reply.thought)
        if reply.action == "finish":
            steps = [f"{t} -> search '{q}'" for t, q in zip(thoughts, (x.input for x in s.steps if x.kind == "tool"),
                                                             strict=False)] + [reply.thought]
            final = ModelAnswer(answer=reply.answer or "(empty)", citations=reply.citations,
                                confidence=reply.confidence,
                                reasoning=ReasoningSteps(problem=s.question.question, steps=steps))
            return s.record(final, None)
        hits = await asyncio.to_thread(s.search, reply.query)
        pad.append(f"<thought>{quote_data(reply.thought)}</thought>\n<search>{quote_data(reply.query)}</search>\n"
                   f"<observation>\n{format_chunks(hits) or '(no results)'}\n</observation>")
    return s.record(None, f"react: no answer within {max_steps} steps (the last turn searched again)")


async def verify(s: Session) -> AnswerRecord:
    draft_prompt, check_prompt, revise_prompt = s.plan.prompts
    context = format_chunks(s.context)
    draft, error = parse(await s.ask("answer", draft_prompt, question=s.question.question, context=context),
                         ModelAnswer)
    if draft is None:
        return s.record(None, error)
    check, _ = parse(await s.ask("check", check_prompt, question=s.question.question, context=context,
                                 answer=draft.answer), SelfCheck)
    if check is None or check.supported:  # a check that could not run leaves the draft unverified (None)
        return s.record(draft, None, verified=check.supported if check else None)
    problems = "\n".join(f"- {p}" for p in check.problems) or "- the check found the draft unsupported"
    revised, _ = parse(await s.ask("revise", revise_prompt, question=s.question.question, context=context,
                                   answer=draft.answer, problems=problems), ModelAnswer)
    return s.record(revised or draft, None, verified=False, revised=revised is not None)


async def parallel_paths(s: Session) -> AnswerRecord:
    *paths, synthesis = s.plan.prompts
    context = format_chunks(s.context)
    steps = await asyncio.gather(*(s.ask(f"path:{p.name}", p, question=s.question.question, context=context)
                                   for p in paths))
    parsed = [(p, *parse(step, ModelAnswer)) for p, step in zip(paths, steps, strict=True)]
    answered = [(p, a) for p, a, _ in parsed if a is not None]
    if not answered:
        return s.record(None, parsed[0][2])
    blocks = "\n".join(f'<path name="{p.name}">\n{quote_data(a.model_dump_json())}\n</path>' for p, a in answered)
    step = await s.ask("synthesize", synthesis, question=s.question.question, context=context, paths=blocks)
    final, error = parse(step, ModelAnswer)
    return s.record(final, error, samples=[a.answer for _, a in answered])


RUNNERS = {"direct": single, "chain_of_thought": single, "self_consistency": self_consistency, "react": react,
           "verify": verify, "parallel_paths": parallel_paths}


async def answer_with(reasoner: Reasoner, endpoint: Endpoint, plan: Plan, question: Question,
                      context: list[RetrievedChunk]) -> AnswerRecord:
    """One question by its plan. Never raises: whatever fails is the record's `error`."""
    session = Session(reasoner, endpoint, plan, question, context)
    try:
        return await RUNNERS[plan.strategy](session)
    except Exception as exc:  # noqa: BLE001 - e.g. the search tool's store went away: this question fails alone
        return session.record(None, redact(f"{type(exc).__name__}: {exc}"))
