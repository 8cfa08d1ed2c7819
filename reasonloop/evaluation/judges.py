"""Judges: the offline heuristic judge and the LLM-as-judge, behind one small interface.

Both return one `Verdict` per item. Reference metrics (exact match, token F1) are computed the same way
for both; they differ in how they decide correctness and groundedness.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from pydantic import BaseModel, ConfigDict, Field

from reasonloop.errors import PromptError
from reasonloop.evaluation.faithfulness import claim_problems
from reasonloop.evaluation.metrics import exact_match, mean, reference_recall, token_f1
from reasonloop.evaluation.reasoning_quality import score_reasoning_quality
from reasonloop.reasoning.chat_api import model_identity
from reasonloop.reasoning.config import CallLimits, Price
from reasonloop.reasoning.llm_calls import Endpoint, describe, endpoint_for, endpoint_of, run_all
from reasonloop.reasoning.prompts import PromptTemplate, format_chunks, format_reasoning
from reasonloop.reasoning.structured import parse_reply, repair_turn
from reasonloop.recipes import Travels
from reasonloop.redact import redact
from reasonloop.retrieval.embeddings import Embedder
from reasonloop.schemas import AnswerRecord, Question, RetrievedChunk, Verdict
from reasonloop.text import split_sentences


@dataclass(frozen=True)
class JudgeItem:
    question: Question
    answer: AnswerRecord
    context: list[RetrievedChunk]


class Judge(Protocol):
    """Scores answers; `version` names the rubric (prompt name@version or heuristic revision), `identity` is all a
    verdict depends on besides its inputs (rubric text, model and parameters, thresholds): the verdict cache key."""

    version: str

    @property
    def identity(self) -> str: ...

    def judge(self, items: list[JudgeItem]) -> list[Verdict]: ...


class HeuristicJudge(Travels):
    """Offline judge: correctness = max(token F1, reference recall, cosine to the reference) >= threshold;
    grounded fraction = share of answer sentences whose best cosine to a context sentence >= threshold and whose
    numbers, names and negation the context bears out (`faithfulness.py`). An answer with no sentences is grounded
    (nothing was claimed). Relevance = cosine of answer and question (clipped at 0); reasoning quality by
    reasonloop/evaluation/reasoning_quality.py."""

    version = "heuristic-v5"

    def __init__(self, embedder: Embedder, correctness_threshold: float, grounding_threshold: float) -> None:
        self.embedder = embedder
        self.correctness_threshold = correctness_threshold
        self.grounding_threshold = grounding_threshold

    @property
    def identity(self) -> str:
        return (f"{self.version}:correct>={self.correctness_threshold}:grounded>={self.grounding_threshold}:"
                f"{self.embedder.weights_sha256}")

    def judge(self, items: list[JudgeItem]) -> list[Verdict]:
        answer_sents = [split_sentences(i.answer.answer) for i in items]
        context_sents = [[s for c in i.context for s in split_sentences(c.text)] for i in items]
        texts = sorted({t for i in items for t in (i.answer.answer, i.question.reference, i.question.question) if t}
                       | {s for group in answer_sents + context_sents for s in group})
        index = {t: n for n, t in enumerate(texts)}
        vectors = self.embedder.embed(texts)  # one encoder call for the whole batch
        return [self._verdict(item, sents, ctx, vectors, index)
                for item, sents, ctx in zip(items, answer_sents, context_sents, strict=True)]

    def _verdict(self, item: JudgeItem, sentences: list[str], context: list[str], vectors: np.ndarray,
                 index: dict[str, int]) -> Verdict:
        answer, reference = item.answer.answer, item.question.reference
        relevance = float(vectors[index[answer]] @ vectors[index[item.question.question]]) if answer else 0.0
        unsupported = []
        if sentences and context:
            support = vectors[[index[s] for s in sentences]] @ vectors[[index[c] for c in context]].T
            evidence = " ".join(c.text for c in item.context)
            for sentence, row in zip(sentences, support, strict=True):
                closest = [context[k] for k in np.argsort(-row)[:CLOSEST]]
                problems = claim_problems(sentence, closest, evidence)
                if row.max() < self.grounding_threshold:
                    problems.insert(0, f"closest context sentence at cosine {row.max():.2f}")
                if problems:
                    unsupported.append(f"{sentence} ({'; '.join(problems)})")
        elif sentences:
            unsupported = list(sentences)
        grounded = 1.0 - len(unsupported) / len(sentences) if sentences else 1.0
        quality = score_reasoning_quality(item.answer, item.context)
        supported = f"{len(sentences) - len(unsupported)}/{len(sentences)} sentences supported"
        judged = {"relevance": min(max(relevance, 0.0), 1.0), **(quality.model_dump() if quality else {}),
                  "grounded_fraction": grounded, "hallucinated": bool(unsupported), "unsupported_claims": unsupported}
        if reference is None:  # a live question: grounding, relevance and reasoning only
            return Verdict(referenced=False, reason=supported, **judged)
        similarity = float(vectors[index[answer]] @ vectors[index[reference]]) if answer else 0.0
        f1 = token_f1(answer, reference)
        correctness = max(f1, reference_recall(answer, reference), similarity, 0.0)
        return Verdict(confidence=min(1.0, abs(correctness - self.correctness_threshold) / CONFIDENT_MARGIN),
                       correct=correctness >= self.correctness_threshold, correctness=min(correctness, 1.0),
                       exact_match=exact_match(answer, reference), token_f1=f1, semantic_similarity=similarity,
                       reason=f"max(F1, reference recall, cosine) = {correctness:.3f}; {supported}", **judged)


R = TypeVar("R", bound=BaseModel)

CONFIDENT_MARGIN = 0.2  # heuristic judge: a correctness this far from its threshold is a sure call (confidence 1)

CLOSEST = 3  # evidence sentences a claim's negation is checked against

class Claim(BaseModel):
    claim: str
    supported: bool


class ReasoningScores(BaseModel):
    consistency: float = Field(ge=0.0, le=1.0)
    completeness: float = Field(ge=0.0, le=1.0)
    clarity: float = Field(ge=0.0, le=1.0)


class JudgeReply(BaseModel):
    """The verdict JSON the rubric prompt asks for; validated before it is trusted. Relevance and reasoning scores
    are optional (rubric v1 does not ask for them; no reasoning, no scores)."""

    model_config = ConfigDict(extra="ignore")

    correct: bool | None = None  # the grounding rubric (no reference) asks for neither
    score: float | None = Field(default=None, ge=0.0, le=1.0)
    claims: list[Claim] = Field(default_factory=list)
    relevance: float | None = Field(default=None, ge=0.0, le=1.0)
    reasoning: ReasoningScores | None = None
    reason: str = ""


class LLMJudge(Travels):
    """LLM-as-judge with a versioned rubric prompt, asked `votes` times per answer (concurrently; set a judge
    temperature above 0 for votes to differ). Correct by majority (a tie is not correct), correctness and grounding
    are means over the valid votes; `agreement` is the majority's share and a split vote is `flaky`. An unparseable
    reply gets one repair request; a vote that still fails is dropped, and when every vote fails the verdict carries
    `judge_error` with the raw text (counted, never scored as 0). A question without a reference (live traffic) is
    judged by the grounding rubric: claims against the context, relevance, reasoning; no correctness."""

    def __init__(self, model: BaseChatModel, prompt: PromptTemplate, limits: CallLimits, votes: int = 1,
                 price: Price | None = None, grounding_prompt: PromptTemplate | None = None) -> None:
        self.model = model
        self.prompt = prompt
        self.grounding_prompt = grounding_prompt
        self.limits = limits
        self.votes = votes
        self.price = price or Price(input_per_1m=0.0, output_per_1m=0.0)
        self.version = prompt.ref

    @property
    def identity(self) -> str:
        params = json.dumps(model_identity(self.model), sort_keys=True, default=str)
        grounding = f":{self.grounding_prompt.ref}:{self.grounding_prompt.sha256}" if self.grounding_prompt else ""
        return f"{self.version}:{self.prompt.sha256}{grounding}:{endpoint_of(self.model)}:{params}:votes={self.votes}"

    def judge(self, items: list[JudgeItem]) -> list[Verdict]:
        if self.grounding_prompt is None and any(i.question.reference is None for i in items):
            raise PromptError(f"judge {self.version}: questions without a reference need the grounding rubric "
                              "(prompts.judge_grounding)")
        endpoint = endpoint_for(self.model, self.limits)
        return run_all([lambda item=item: self._judge_one(item, endpoint) for item in items])

    async def _vote(self, item: JudgeItem, endpoint: Endpoint) -> Asked[JudgeReply]:
        values = {"question": item.question.question, "reference": item.question.reference or "",
                  "answer": item.answer.answer, "reasoning": format_reasoning(item.answer.reasoning),
                  "context": format_chunks(item.context)}
        prompt = self.prompt if item.question.reference is not None else self.grounding_prompt
        return await ask_verdict(self.model, endpoint, prompt, values, JudgeReply)  # type: ignore[arg-type]

    async def _judge_one(self, item: JudgeItem, endpoint: Endpoint) -> Verdict:
        answer, reference = item.answer.answer, item.question.reference
        votes = await asyncio.gather(*(self._vote(item, endpoint) for _ in range(self.votes)))
        tokens_in, tokens_out = sum(v.tokens_in for v in votes), sum(v.tokens_out for v in votes)
        spent: dict[str, Any] = {"judge_tokens_in": tokens_in, "judge_tokens_out": tokens_out,
                                 "judge_cost_usd": self.price.cost_usd(tokens_in, tokens_out)}
        spent |= {"exact_match": exact_match(answer, reference), "token_f1": token_f1(answer, reference)} \
            if reference is not None else {"referenced": False}
        replies = [v.reply for v in votes if not isinstance(v.reply, str)]
        if not replies:
            return Verdict(judge_error=str(votes[0].reply), votes=len(votes), **spent)
        return combine_votes(replies, len(votes), spent)


class EscalatingJudge(Travels):
    """A cheap judge first; the verdicts it is unsure of (votes split, confidence under `min_confidence`, or a
    judge error) go to a stronger judge, whose verdict replaces the first one and whose cost adds to it. When the
    stronger judge fails too, the first verdict stands."""

    def __init__(self, first: Judge, stronger: Judge, min_confidence: float) -> None:
        self.first, self.stronger, self.min_confidence = first, stronger, min_confidence
        self.version = f"{first.version}+{stronger.version}"

    @property
    def identity(self) -> str:
        return f"{self.first.identity}|escalate<{self.min_confidence}:{self.stronger.identity}"

    def unsure(self, verdict: Verdict) -> bool:
        low = verdict.confidence is not None and verdict.confidence < self.min_confidence
        return verdict.judge_error is not None or verdict.flaky or low

    def judge(self, items: list[JudgeItem]) -> list[Verdict]:
        verdicts = self.first.judge(items)
        unsure = [i for i, v in enumerate(verdicts) if self.unsure(v)]
        for i, second in zip(unsure, self.stronger.judge([items[i] for i in unsure]), strict=True):
            first = verdicts[i]
            spent = {"judge_tokens_in": first.judge_tokens_in + second.judge_tokens_in,
                     "judge_tokens_out": first.judge_tokens_out + second.judge_tokens_out,
                     "judge_cost_usd": first.judge_cost_usd + second.judge_cost_usd}
            verdicts[i] = first.model_copy(update=spent) if second.judge_error is not None else \
                second.model_copy(update={**spent, "escalated": True})
        return verdicts


@dataclass(frozen=True)
class Asked(Generic[R]):
    """A judge call's outcome: the validated reply, or why there is none; and the tokens it spent."""

    reply: R | str
    tokens_in: int = 0
    tokens_out: int = 0


async def ask_verdict(model: BaseChatModel, endpoint: Endpoint, prompt: PromptTemplate, values: dict[str, str],
                      schema: type[R]) -> Asked[R]:
    """One judge call rendered from `values` (those the prompt declares) and validated as `schema`, with one repair
    request: the reply, or why there is none (the failed call, or the raw text of a reply unparseable twice)."""
    spent = [0, 0]

    async def call(messages: list[BaseMessage]) -> str:
        result = await endpoint.call(model, messages)
        spent[0] += result.tokens_in
        spent[1] += result.tokens_out
        return result.text

    try:
        messages = prompt.to_messages(**{k: values[k] for k in prompt.input_variables})
        raw = await call(messages)
        reply = parse_reply(raw, schema)
        if isinstance(reply, str):
            raw = await call([*messages, *repair_turn(raw, reply, schema)])
            reply = parse_reply(raw, schema)
    except Exception as exc:  # noqa: BLE001 - a failed judge call is data, recorded per question
        return Asked(redact(describe(exc)), *spent)
    return Asked(f"unparseable verdict: {raw[:2000]}" if isinstance(reply, str) else reply, *spent)


def combine_votes(replies: list[JudgeReply], asked: int, extra: dict[str, Any]) -> Verdict:
    """One verdict from the valid votes (see LLMJudge); without a reference, grounding, relevance and reasoning."""
    if extra.get("referenced") is False:
        return grounding_votes(replies, asked, extra)
    n_correct = sum(bool(r.correct) for r in replies)
    correct = n_correct * 2 > len(replies)
    grounded = [1.0 - sum(not c.supported for c in r.claims) / len(r.claims) if r.claims else 1.0 for r in replies]
    hallucinating = [r for r in replies if any(not c.supported for c in r.claims)]
    scores = [r.score or 0.0 for r in replies]
    majority = max(n_correct, len(replies) - n_correct)
    rated = [r.reasoning for r in replies if r.reasoning is not None]
    quality = {k: mean([getattr(q, k) for q in rated]) for k in ReasoningScores.model_fields}
    score = sum(scores) / len(scores)
    confidence = majority / len(replies) * min(1.0, abs(score - 0.5) * 2)  # split votes or a middling score: unsure
    return Verdict(correct=correct, correctness=score, confidence=confidence,
                   grounded_fraction=sum(grounded) / len(grounded), hallucinated=len(hallucinating) * 2 > len(replies),
                   unsupported_claims=[c.claim for c in hallucinating[0].claims if not c.supported]
                   if len(hallucinating) * 2 > len(replies) else [],
                   reason=next((r.reason for r in replies if bool(r.correct) == correct), ""), votes=asked,
                   agreement=majority / len(replies), score_spread=max(scores) - min(scores),
                   flaky=0 < n_correct < len(replies), relevance=mean([r.relevance for r in replies
                                                                      if r.relevance is not None]),
                   **quality, **extra)


def grounding_votes(replies: list[JudgeReply], asked: int, extra: dict[str, Any]) -> Verdict:
    """One reference-free verdict: grounded fraction as the mean over the votes, hallucinated by majority,
    relevance and reasoning scores as means."""
    grounded = [1.0 - sum(not c.supported for c in r.claims) / len(r.claims) if r.claims else 1.0 for r in replies]
    hallucinating = [r for r in replies if any(not c.supported for c in r.claims)]
    rated = [r.reasoning for r in replies if r.reasoning is not None]
    majority = len(hallucinating) * 2 > len(replies)
    return Verdict(grounded_fraction=sum(grounded) / len(grounded), hallucinated=majority,
                   unsupported_claims=[c.claim for c in hallucinating[0].claims if not c.supported] if majority else [],
                   reason=replies[0].reason, votes=asked,
                   relevance=mean([r.relevance for r in replies if r.relevance is not None]),
                   **{k: mean([getattr(q, k) for q in rated]) for k in ReasoningScores.model_fields}, **extra)
