"""Pairwise judging of two answers to one question, asked in both orders so a judge's taste for a position cancels:
only a preference that survives swapping A and B counts as a win; one that flips is a tie, and counted as
position-inconsistent (the judge's position bias, reported)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, ConfigDict, Field

from reasonloop.evaluation.judges import Judge, JudgeItem, ask_verdict
from reasonloop.reasoning.config import CallLimits
from reasonloop.reasoning.llm_calls import endpoint_for, run_all
from reasonloop.reasoning.prompts import PromptTemplate, format_chunks, quote_data
from reasonloop.schemas import AnswerRecord, Question, QuestionResult, Record, RetrievedChunk

Preference = Literal["A", "B", "tie"]
Arm = Literal["production", "candidate", "tie"]


@dataclass(frozen=True)
class PairItem:
    question: Question
    context: list[RetrievedChunk]
    a: AnswerRecord
    b: AnswerRecord


class PairwiseJudge(Protocol):
    version: str

    def prefer(self, items: list[PairItem]) -> list[Preference | str]:
        """A, B or tie per item; a string says why the judge gave no preference."""
        ...


class PairReply(BaseModel):
    model_config = ConfigDict(extra="ignore")

    winner: Preference
    reason: str = ""


class LLMPairwiseJudge:
    """The pairwise rubric prompt on an OpenAI-compatible endpoint (with the answer judge's repair and retry)."""

    def __init__(self, model: BaseChatModel, prompt: PromptTemplate, limits: CallLimits) -> None:
        self.model, self.prompt, self.limits = model, prompt, limits
        self.version = prompt.ref

    def prefer(self, items: list[PairItem]) -> list[Preference | str]:
        endpoint = endpoint_for(self.model, self.limits)

        async def ask(item: PairItem) -> Preference | str:
            values = {"question": item.question.question, "reference": item.question.reference,
                      "context": format_chunks(item.context), "answer_a": quote_data(item.a.answer),
                      "answer_b": quote_data(item.b.answer)}
            reply = (await ask_verdict(self.model, endpoint, self.prompt, values, PairReply)).reply
            return reply if isinstance(reply, str) else reply.winner

        return run_all([lambda item=item: ask(item) for item in items])


class HeuristicPairwiseJudge:
    """Offline: the heuristic judge scores both answers (correctness + grounded fraction); a difference under
    `margin` is a tie. Order-blind by construction, so both orders always agree."""

    def __init__(self, judge: Judge, margin: float = 0.05) -> None:
        self.judge, self.margin = judge, margin
        self.version = f"pairwise-{judge.version}"

    def prefer(self, items: list[PairItem]) -> list[Preference | str]:
        verdicts = self.judge.judge([JudgeItem(i.question, answer, i.context) for i in items for answer in (i.a, i.b)])
        scores = [v.correctness + v.grounded_fraction for v in verdicts]
        return ["tie" if abs(a - b) < self.margin else "A" if a > b else "B"
                for a, b in zip(scores[::2], scores[1::2], strict=True)]


class PairOutcome(Record):
    question_id: str
    winner: Arm
    consistent: bool = Field(description="both orders named the same winner (true when not asked or failed)")
    judge_error: bool = Field(default=False, description="an order got no preference from the judge: a tie")
    forward: str = Field(description="production shown as A: the judge's reply")
    backward: str = Field(description="candidate shown as A: the judge's reply")


def _arm(reply: Preference | str, first: Arm, second: Arm) -> Arm | None:
    return {"A": first, "B": second, "tie": "tie"}.get(reply)  # type: ignore[return-value]


def compare_both_orders(judge: PairwiseJudge, questions: list[Question], contexts: list[list[RetrievedChunk]],
                        production: list[AnswerRecord], candidate: list[AnswerRecord]) -> list[PairOutcome]:
    """Each question's winner between the production and the candidate answer. A failed answer loses to an
    answered one without asking; two failed answers tie."""
    outcomes: dict[int, PairOutcome] = {}
    asked = []
    for i, (q, p, c) in enumerate(zip(questions, production, candidate, strict=True)):
        if p.error is None and c.error is None:
            asked.append(i)
            continue
        winner: Arm = "tie" if p.error and c.error else "candidate" if p.error else "production"
        outcomes[i] = PairOutcome(question_id=q.id, winner=winner, consistent=True, forward="", backward="")
    forward = judge.prefer([PairItem(questions[i], contexts[i], production[i], candidate[i]) for i in asked])
    backward = judge.prefer([PairItem(questions[i], contexts[i], candidate[i], production[i]) for i in asked])
    for i, f, b in zip(asked, forward, backward, strict=True):
        one, two = _arm(f, "production", "candidate"), _arm(b, "candidate", "production")
        failed = one is None or two is None
        consistent = not failed and one == two
        outcomes[i] = PairOutcome(question_id=questions[i].id, winner=one if consistent and one else "tie",
                                  consistent=consistent or failed, judge_error=failed, forward=f, backward=b)
    return [outcomes[i] for i in range(len(questions))]


def pairwise_metrics(outcomes: list[PairOutcome]) -> dict[str, float]:
    """Win rates of each arm, ties, and the share of pairs whose two orders disagreed (position inconsistency)."""
    n = len(outcomes) or 1
    return {"pairwise.candidate_win_rate": sum(o.winner == "candidate" for o in outcomes) / n,
            "pairwise.production_win_rate": sum(o.winner == "production" for o in outcomes) / n,
            "pairwise.tie_rate": sum(o.winner == "tie" for o in outcomes) / n,
            "pairwise.position_inconsistency": sum(not o.consistent for o in outcomes) / n,
            "pairwise.n_judge_errors": float(sum(o.judge_error for o in outcomes)), "pairwise.n": float(len(outcomes))}


def compare_results(judge: PairwiseJudge, production: list[QuestionResult],
                    candidate: list[QuestionResult]) -> list[PairOutcome]:
    """Each question's better answer by the pairwise judge, asked in both orders (production's context for both)."""
    return compare_both_orders(judge, [r.question for r in production], [r.retrieved for r in production],
                               [r.answer for r in production], [r.answer for r in candidate])
