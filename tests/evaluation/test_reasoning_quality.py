"""Reasoning quality scored offline: each criterion on hand-made chains with hand-computed values."""

from __future__ import annotations

import pytest

from reasonloop.evaluation.reasoning_quality import score_reasoning_quality
from reasonloop.schemas import AnswerRecord, ReasoningSteps, RetrievedChunk

CONTEXT = [RetrievedChunk(chunk_id="c1", doc_id="d1", text="The Broncos beat the Panthers 24 to 10.", score=0.9,
                          rank=1)]


def answer(text: str, citations: list[str], **chain: object) -> AnswerRecord:
    return AnswerRecord(question_id="q", answer=text, citations=citations, reasoning=ReasoningSteps(**chain))


def test_a_complete_cited_chain_scores_full_marks() -> None:
    record = answer("The Broncos beat the Panthers.", ["c1"], problem="Who won?", context="c1 reports the score.",
                    steps=["c1 says the Broncos beat the Panthers."], verification="Quoted from c1.")
    quality = score_reasoning_quality(record, CONTEXT)
    assert quality is not None and quality.model_dump() == {"consistency": 1.0, "completeness": 1.0, "clarity": 1.0}


def test_missing_parts_unknown_citations_and_unsupported_words_cost_points() -> None:
    record = answer("The Chiefs won.", ["c9"], steps=["guess"])
    quality = score_reasoning_quality(record, CONTEXT)
    assert quality is not None
    assert quality.completeness == pytest.approx(3 / 6)  # steps, answer, citations of problem/context/steps/.../cites
    # no cited id exists (0); evidence falls back to all context: "chiefs" absent, "won" absent -> 0 of 2
    assert quality.consistency == 0.0


def test_long_sentences_and_repeated_steps_are_unclear() -> None:
    long_step = " ".join(["word"] * 60)
    record = answer("Broncos.", ["c1"], problem="p", steps=[long_step, long_step])
    quality = score_reasoning_quality(record, CONTEXT)
    # sentences: "p" (1 word), two of 60 words, "Broncos." (1): mean 30.5 words -> 30/30.5; two equal steps: 1/2
    assert quality is not None and quality.clarity == pytest.approx(30 / 30.5 * 0.5)


def test_an_answer_without_reasoning_has_no_reasoning_quality() -> None:
    assert score_reasoning_quality(answer("Broncos", ["c1"]), CONTEXT) is None
