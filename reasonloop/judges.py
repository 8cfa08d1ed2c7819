"""Judges: the offline heuristic judge and the LLM-as-judge, behind one small interface.

Both return one `Verdict` per item. Reference metrics (exact match, token F1) are computed the same way
for both; they differ in how they decide correctness and groundedness.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage
from pydantic import BaseModel, ConfigDict, Field

from reasonloop.embeddings import Embedder
from reasonloop.faithfulness import claim_problems
from reasonloop.llm_calls import Endpoint, describe, endpoint_for, endpoint_of, parse_reply, run_all
from reasonloop.metrics import exact_match, mean, reference_recall, split_sentences, token_f1
from reasonloop.prompts import PromptTemplate, format_chunks, format_reasoning
from reasonloop.reasoning_quality import score_reasoning_quality
from reasonloop.redact import redact
from reasonloop.schemas import AnswerRecord, Question, RetrievedChunk, Verdict
from reasonloop.settings import CallLimits


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


class HeuristicJudge:
    """Offline judge: correctness = max(token F1, reference recall, cosine to the reference) >= threshold;
    grounded fraction = share of answer sentences whose best cosine to a context sentence >= threshold and whose
    numbers, names and negation the context bears out (reasonloop/faithfulness.py). An answer with no sentences is
    grounded (nothing was claimed). Relevance = cosine of answer and question (clipped at 0); reasoning quality by
    reasonloop/reasoning_quality.py."""

    version = "heuristic-v3"

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
        texts = sorted({t for i in items for t in (i.answer.answer, i.question.reference, i.question.question)}
                       | {s for group in answer_sents + context_sents for s in group})
        index = {t: n for n, t in enumerate(texts)}
        vectors = self.embedder.embed(texts)  # one encoder call for the whole batch
        return [self._verdict(item, sents, ctx, vectors, index)
                for item, sents, ctx in zip(items, answer_sents, context_sents, strict=True)]

    def _verdict(self, item: JudgeItem, sentences: list[str], context: list[str], vectors: np.ndarray,
                 index: dict[str, int]) -> Verdict:
        answer, reference = item.answer.answer, item.question.reference
        similarity = float(vectors[index[answer]] @ vectors[index[reference]])
        relevance = float(vectors[index[answer]] @ vectors[index[item.question.question]])
        f1 = token_f1(answer, reference)
        correctness = max(f1, reference_recall(answer, reference), similarity, 0.0)
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
        return Verdict(relevance=min(max(relevance, 0.0), 1.0), **(quality.model_dump() if quality else {}),
                       correct=correctness >= self.correctness_threshold, correctness=min(correctness, 1.0),
                       exact_match=exact_match(answer, reference), token_f1=f1, semantic_similarity=similarity,
                       grounded_fraction=grounded, hallucinated=bool(unsupported), unsupported_claims=unsupported,
                       reason=f"max(F1, reference recall, cosine) = {correctness:.3f}; "
                              f"{len(sentences) - len(unsupported)}/{len(sentences)} sentences supported")


R = TypeVar("R", bound=BaseModel)

CLOSEST = 3  # evidence sentences a claim's negation is checked against

REPAIR_REQUEST = "Your reply was not the JSON object the instructions ask for. Reply again with only that object."


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

    correct: bool
    score: float = Field(ge=0.0, le=1.0)
    claims: list[Claim] = Field(default_factory=list)
    relevance: float | None = Field(default=None, ge=0.0, le=1.0)
    reasoning: ReasoningScores | None = None
    reason: str = ""


class LLMJudge:
    """LLM-as-judge with a versioned rubric prompt, asked `votes` times per answer (concurrently; set a judge
    temperature above 0 for votes to differ). Correct by majority (a tie is not correct), correctness and grounding
    are means over the valid votes; `agreement` is the majority's share and a split vote is `flaky`. An unparseable
    reply gets one repair request; a vote that still fails is dropped, and when every vote fails the verdict carries
    `judge_error` with the raw text (counted, never scored as 0)."""

    def __init__(self, model: BaseChatModel, prompt: PromptTemplate, limits: CallLimits, votes: int = 1) -> None:
        self.model = model
        self.prompt = prompt
        self.limits = limits
        self.votes = votes
        self.version = prompt.ref

    @property
    def identity(self) -> str:
        params = json.dumps(self.model._identifying_params, sort_keys=True, default=str)
        return f"{self.version}:{self.prompt.sha256}:{endpoint_of(self.model)}:{params}:votes={self.votes}"

    def judge(self, items: list[JudgeItem]) -> list[Verdict]:
        endpoint = endpoint_for(self.model, self.limits)
        return run_all([lambda item=item: self._judge_one(item, endpoint) for item in items])

    async def _vote(self, item: JudgeItem, endpoint: Endpoint) -> JudgeReply | str:
        values = {"question": item.question.question, "reference": item.question.reference,
                  "answer": item.answer.answer, "reasoning": format_reasoning(item.answer.reasoning),
                  "context": format_chunks(item.context)}
        return await ask_verdict(self.model, endpoint, self.prompt, values, JudgeReply)

    async def _judge_one(self, item: JudgeItem, endpoint: Endpoint) -> Verdict:
        answer, reference = item.answer.answer, item.question.reference
        reference_scores = {"exact_match": exact_match(answer, reference), "token_f1": token_f1(answer, reference)}
        votes = await asyncio.gather(*(self._vote(item, endpoint) for _ in range(self.votes)))
        replies = [v for v in votes if not isinstance(v, str)]
        if not replies:
            return Verdict(judge_error=str(votes[0]), votes=len(votes), **reference_scores)
        return combine_votes(replies, len(votes), reference_scores)


async def ask_verdict(model: BaseChatModel, endpoint: Endpoint, prompt: PromptTemplate, values: dict[str, str],
                      schema: type[R]) -> R | str:
    """One judge call rendered from `values` (those the prompt declares) and validated as `schema`, with one repair
    request: the reply, or why there is none (the failed call, or the raw text of a reply unparseable twice)."""
    try:
        messages = prompt.to_messages(**{k: values[k] for k in prompt.input_variables})
        raw = (await endpoint.call(model, messages)).text
        reply = parse_reply(raw, schema)
        if isinstance(reply, str):
            retry = [*messages, AIMessage(raw), HumanMessage(REPAIR_REQUEST)]
            raw = (await endpoint.call(model, retry)).text
            reply = parse_reply(raw, schema)
    except Exception as exc:  # noqa: BLE001 - a failed judge call is data, recorded per question
        return redact(describe(exc))
    return f"unparseable verdict: {raw[:2000]}" if isinstance(reply, str) else reply


def combine_votes(replies: list[JudgeReply], asked: int, reference_scores: dict[str, Any]) -> Verdict:
    """One verdict from the valid votes (see LLMJudge)."""
    n_correct = sum(r.correct for r in replies)
    correct = n_correct * 2 > len(replies)
    grounded = [1.0 - sum(not c.supported for c in r.claims) / len(r.claims) if r.claims else 1.0 for r in replies]
    hallucinating = [r for r in replies if any(not c.supported for c in r.claims)]
    scores = [r.score for r in replies]
    majority = max(n_correct, len(replies) - n_correct)
    rated = [r.reasoning for r in replies if r.reasoning is not None]
    quality = {k: mean([getattr(q, k) for q in rated]) for k in ReasoningScores.model_fields}
    return Verdict(correct=correct, correctness=sum(scores) / len(scores),
                   grounded_fraction=sum(grounded) / len(grounded), hallucinated=len(hallucinating) * 2 > len(replies),
                   unsupported_claims=[c.claim for c in hallucinating[0].claims if not c.supported]
                   if len(hallucinating) * 2 > len(replies) else [],
                   reason=next(r.reason for r in replies if r.correct == correct), votes=asked,
                   agreement=majority / len(replies), score_spread=max(scores) - min(scores),
                   flaky=0 < n_correct < len(replies), relevance=mean([r.relevance for r in replies
                                                                      if r.relevance is not None]),
                   **quality, **reference_scores)
