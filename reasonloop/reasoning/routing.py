"""Adaptive reasoning depth: a complexity score from question features and retrieval signals routes each question
to SIMPLE / MODERATE / COMPLEX, and the plan says how the question is answered (strategy, model, prompts, context
budget)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from langchain_core.language_models import BaseChatModel

from reasonloop.reasoning.config import STRATEGIES, ReasoningConfig, Route, Strategy
from reasonloop.reasoning.prompts import PromptTemplate
from reasonloop.schemas import Question, RetrievedChunk

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


def chosen_strategy(question: Question, cfg: ReasoningConfig) -> str:
    """The question's `metadata.strategy`, else the run's (possibly `adaptive`, decided once context is in)."""
    return str(question.metadata.get("strategy") or cfg.strategy)


@dataclass(frozen=True)
class Plan:
    """How one question is answered."""

    strategy: Strategy
    model: BaseChatModel
    prompts: tuple[PromptTemplate, ...]
    route: Route | None = None
    complexity: float | None = None
    extra: str = ""  # what else the answer depends on: ReAct's index version and search depth

    @property
    def identity(self) -> str:
        """What the answer depends on beyond the question and context (part of the cache key): the strategy, the
        sampling temperature, every prompt's version and content hash, and `extra`."""
        temperature = getattr(self.model, "temperature", None)
        prompts = ",".join(f"{p.ref}:{p.sha256[:16]}" for p in self.prompts)
        return f"{self.strategy}:t={temperature}:{prompts}:{self.extra}"


def with_temperature(model: BaseChatModel, temperature: float) -> BaseChatModel:
    """The same model sampling at `temperature` (models without one, like the extractive reasoner, unchanged)."""
    if "temperature" not in type(model).model_fields:
        return model
    return model.model_validate({**model.__dict__, "temperature": temperature})  # validated: o-series reject it


def route(question: Question, context: list[RetrievedChunk], cfg: ReasoningConfig) -> tuple[Strategy, Route | None,
                                                                                              float | None]:
    """(strategy, route, score): adaptive questions are scored and routed, the others keep their strategy."""
    chosen = chosen_strategy(question, cfg)
    route_, score = None, None
    if chosen == "adaptive":
        score = complexity(question, context)
        route_ = route_of(score, cfg)
        chosen = cfg.routes[route_]
    if chosen not in STRATEGIES:
        raise ValueError(f"question {question.id}: unknown strategy '{chosen}' (known: {list(STRATEGIES)})")
    return chosen, route_, score  # type: ignore[return-value]
