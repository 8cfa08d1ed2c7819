"""The optimization layer: context budgets (prompt compression), adaptive retrieval depth, efficiency J, and the
verdict cache keyed by the judge's identity."""

from __future__ import annotations

from pathlib import Path

import pytest

from reasonloop.evaluation.aggregate import summarize_results
from reasonloop.evaluation.judging import judge_answers
from reasonloop.reasoning.answer_store import RecordStore
from reasonloop.reasoning.compression import compress_context
from reasonloop.reasoning.config import OptimizeConfig
from reasonloop.reasoning.context import adapt_depth
from reasonloop.schemas import AnswerRecord, Question, QuestionResult, RetrievedChunk, Verdict


def chunk(cid: str, text: str, cosine: float, rank: int = 1) -> RetrievedChunk:
    return RetrievedChunk(chunk_id=cid, doc_id=cid.split("::")[0], text=text, score=cosine, dense_score=cosine,
                          rank=rank)


def words(text: str) -> int:
    return len(text.split())


ANSWERING = chunk("sb::0", "Tickets sold out early. The Denver Broncos won Super Bowl 50 in Santa Clara. "
                           "The halftime show was headlined by Coldplay.", 0.8)
COPY = chunk("sb::1", ANSWERING.text, 0.79, rank=2)
FAR = chunk("rh::0", "The Rhine is a European river that flows through Germany.", 0.3, rank=3)
NEAR = chunk("nfl::0", "The National Football League season ends with the Super Bowl. Fans travel far.", 0.7, 4)


def test_no_budget_changes_nothing() -> None:
    context = [ANSWERING, COPY, FAR]
    assert compress_context("Who won Super Bowl 50?", context, None, 0.3, words) == context


def test_compression_drops_copies_and_far_chunks_then_keeps_the_best_sentences() -> None:
    compressed = compress_context("Who won Super Bowl 50?", [ANSWERING, COPY, FAR, NEAR], 20, 0.3, words)
    assert [c.chunk_id for c in compressed] == ["sb::0", "nfl::0"]  # copy and far chunk gone, order kept
    assert "The Denver Broncos won Super Bowl 50 in Santa Clara." in compressed[0].text
    assert "Coldplay" not in compressed[0].text and sum(words(c.text) for c in compressed) <= 20
    assert compressed[0].score == ANSWERING.score  # ids and scores survive for citations and traces


def test_the_best_sentence_survives_even_a_tiny_budget() -> None:
    [kept] = compress_context("Who won Super Bowl 50?", [ANSWERING], 1, 0.3, words)
    assert kept.text == "The Denver Broncos won Super Bowl 50 in Santa Clara."


def test_retrieval_widens_only_where_it_is_weak() -> None:
    ranked = [chunk(f"d{i}::0", "text", 0.25 - i / 100, rank=i + 1) for i in range(8)]
    cfg = OptimizeConfig(widen_below=0.3, widen_k=6)
    assert len(adapt_depth(ranked, 4, cfg)) == 6  # top cosine 0.25 < 0.3: widened
    strong = [c.model_copy(update={"dense_score": 0.9}) for c in ranked]
    assert len(adapt_depth(strong, 4, cfg)) == 4
    assert len(adapt_depth(ranked, 4, OptimizeConfig())) == 4  # widening off by default


def result(i: int, correct: bool, hallucinated: bool = False, failed: bool = False,
           cost: float = 0.0, tokens: int = 1000) -> QuestionResult:
    q = Question(id=f"q{i}", question="q?", reference="r")
    answer = AnswerRecord(question_id=q.id, answer="" if failed else "a", error="boom" if failed else None,
                          cost_usd=cost, tokens_in=tokens)
    verdict = None if failed else Verdict(correct=correct, hallucinated=hallucinated)
    return QuestionResult(question=q, retrieved=[], answer=answer, verdict=verdict)


def test_efficiency_j_in_tokens_offline_and_dollars_when_priced() -> None:
    results = [result(0, True), result(1, True), result(2, False, hallucinated=True), result(3, False, failed=True)]
    summary = summarize_results(results, alpha=0.5)
    assert summary.accuracy == 0.5 and summary.error_rate == 0.5  # one hallucinated + one failed of four
    assert summary.efficiency_cost_unit == "ktokens_per_query"
    assert summary.efficiency_j == pytest.approx((0.5 - 0.5 * 0.5) / 1.0)  # 1,000 tokens per query
    priced = [r.model_copy(update={"answer": r.answer.model_copy(update={"cost_usd": 0.002})}) for r in results]
    summary = summarize_results(priced, alpha=0.5)
    assert summary.efficiency_cost_unit == "usd_per_query" and summary.efficiency_j == pytest.approx(0.25 / 0.002)


class CountingJudge:
    """A judge that counts what it is asked; its identity is what the verdict cache keys on."""

    version = "counting-v1"

    def __init__(self, threshold: float) -> None:
        self.threshold, self.judged = threshold, 0

    @property
    def identity(self) -> str:
        return f"{self.version}:{self.threshold}"

    def judge(self, items: list) -> list[Verdict]:  # type: ignore[type-arg]
        self.judged += len(items)
        return [Verdict(correct=True, reason=f"threshold {self.threshold}") for _ in items]


def test_verdicts_are_reused_until_the_judge_or_the_answer_changes(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "a.sqlite", run="r", shared=True, ttl_s=3600, table="verdicts")
    questions = [Question(id=f"q{i}", question=f"Question {i}?", reference="r") for i in range(3)]
    answers = [AnswerRecord(question_id=q.id, answer=f"answer {i}") for i, q in enumerate(questions)]
    contexts = [[ANSWERING]] * 3
    judge = CountingJudge(0.7)
    first = judge_answers(questions, contexts, answers, judge, store)
    again = judge_answers(questions, contexts, answers, judge, store)
    assert judge.judged == 3 and all(v.reused for v in again) and not any(v.reused for v in first)
    assert [v.model_copy(update={"reused": False}) for v in again] == first
    changed = [answers[0].model_copy(update={"answer": "a new answer"}), *answers[1:]]
    judge_answers(questions, contexts, changed, judge, store)
    assert judge.judged == 4  # only the changed answer
    stricter = CountingJudge(0.9)
    verdicts = judge_answers(questions, contexts, answers, stricter, store)
    assert stricter.judged == 3 and all(v.reason == "threshold 0.9" for v in verdicts)  # a new judge: all afresh
    failed = [AnswerRecord(question_id="q0", error="boom"), *answers[1:]]
    assert judge_answers(questions, contexts, failed, judge, store)[0] is None
