"""Reasoning strategies and adaptive depth. A plan says how one question is answered: which prompt, how many
calls at which temperature; `combine` turns the calls' records into the question's answer (self-consistency:
a majority vote over normalized answers, the agreement over all samples as confidence). The complexity score routes each
question to SIMPLE / MODERATE / COMPLEX when the strategy is `adaptive`."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from langchain_core.language_models import BaseChatModel

from reasonloop.metrics import normalize_answer
from reasonloop.prompts import PromptTemplate
from reasonloop.schemas import AnswerRecord, Question, RetrievedChunk
from reasonloop.settings import Price, ReasoningConfig, Route, Strategy

MULTI_PART = re.compile(r"\b(and|or|both|compare[ds]?|difference|between|before|after|why|how|explain|"
                        r"relationship|cause[ds]?|effect|versus|vs)\b", re.I)


def complexity(question: Question, context: list[RetrievedChunk]) -> float:
    """0 (a short factoid the top chunk clearly matches) .. 1 (long, multi-part, or weakly/ambiguously retrieved).
    Question features: length and multi-part cues; retrieval signals: the top chunk's cosine and its margin
    over the runner-up."""
    words = len(question.question.split())
    cues = len(MULTI_PART.findall(question.question))
    dense = sorted((c.dense_score for c in context if c.dense_score is not None), reverse=True) or \
        sorted((c.score for c in context), reverse=True)
    top = dense[0] if dense else 0.0
    margin = dense[0] - dense[1] if len(dense) > 1 else 0.0
    weak = min(1.0, max(0.0, 1.0 - top))
    ambiguous = 1.0 - min(1.0, max(0.0, margin) / 0.1)
    score = 0.35 * min(1.0, words / 25) + 0.35 * min(1.0, cues / 2) + 0.2 * weak + 0.1 * ambiguous
    return round(score, 4)


def route_of(score: float, cfg: ReasoningConfig) -> Route:
    if score < cfg.simple_below:
        return "simple"
    return "complex" if score >= cfg.complex_from else "moderate"


@dataclass(frozen=True)
class Reasoner:
    """Everything that answers questions: the model, one prompt per strategy, the strategy config, prices."""

    model: BaseChatModel
    prompts: dict[Strategy, PromptTemplate]
    config: ReasoningConfig
    price: Price

    def plan(self, question: Question, context: list[RetrievedChunk]) -> Plan:
        return plan_for(question, context, self.config, self.model, self.prompts)


@dataclass(frozen=True)
class Plan:
    """How one question is answered."""

    strategy: Strategy
    prompt: PromptTemplate
    model: BaseChatModel
    calls: int
    route: Route | None = None
    complexity: float | None = None

    @property
    def identity(self) -> str:
        """What the answer depends on beyond model, prompt, question and context (part of the cache key)."""
        params = self.model._identifying_params
        return f"{self.strategy}:n={self.calls}:t={params.get('temperature')}"


def with_temperature(model: BaseChatModel, temperature: float) -> BaseChatModel:
    """The same model sampling at `temperature` (models without one, like the extractive reasoner, unchanged)."""
    if "temperature" not in type(model).model_fields:
        return model
    return model.model_copy(update={"temperature": temperature})


def plan_for(question: Question, context: list[RetrievedChunk], cfg: ReasoningConfig, model: BaseChatModel,
             prompts: dict[Strategy, PromptTemplate]) -> Plan:
    """The strategy for one question: its `metadata.strategy`, else the run's, else (adaptive) its route's."""
    chosen = question.metadata.get("strategy") or cfg.strategy
    route, score = None, None
    if chosen == "adaptive":
        score = complexity(question, context)
        route = route_of(score, cfg)
        chosen = cfg.routes[route]
    if chosen not in prompts:
        raise ValueError(f"question {question.id}: unknown strategy '{chosen}' (known: {sorted(prompts)})")
    strategy: Strategy = chosen  # type: ignore[assignment]
    if strategy == "self_consistency":
        sc = cfg.self_consistency
        return Plan(strategy, prompts[strategy], with_temperature(model, sc.temperature), sc.samples, route, score)
    return Plan(strategy, prompts[strategy], model, 1, route, score)


def combine(plan: Plan, samples: list[AnswerRecord]) -> AnswerRecord:
    """One record per question. Self-consistency: the most frequent normalized answer wins (ties: the earliest
    sample), confidence = its share of all samples (a failed sample votes for nobody); tokens and cost add up,
    latency is the slowest sample (they run concurrently)."""
    tags = {"strategy": plan.strategy, "route": plan.route, "complexity": plan.complexity, "n_calls": plan.calls}
    if plan.calls == 1:
        return samples[0].model_copy(update=tags)
    answered = [s for s in samples if s.error is None]
    totals = {"tokens_in": sum(s.tokens_in for s in samples), "tokens_out": sum(s.tokens_out for s in samples),
              "cost_usd": sum(s.cost_usd for s in samples), "latency_s": max(s.latency_s for s in samples)}
    if not answered:
        return samples[0].model_copy(update={**tags, **totals})
    votes = Counter(normalize_answer(s.answer) for s in answered)
    winner, count = votes.most_common(1)[0]  # equal counts keep first-seen order: the earliest sample wins
    chosen = next(s for s in answered if normalize_answer(s.answer) == winner)
    return chosen.model_copy(update={**tags, **totals, "confidence": count / plan.calls,
                                     "samples": [s.answer for s in answered]})
