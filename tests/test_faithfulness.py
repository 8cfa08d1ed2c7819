"""Claim checks beyond similarity: the edits SummEdits makes (a changed name, number or negation) leave a claim
as close to its source sentence as ever, so the heuristic judge checks them explicitly."""

from __future__ import annotations

from reasonloop.faithfulness import claim_problems
from reasonloop.judges import HeuristicJudge, JudgeItem
from reasonloop.schemas import AnswerRecord, Question, RetrievedChunk

SOURCE = "The Denver Broncos defeated the Carolina Panthers 24-10 to win Super Bowl 50 in Santa Clara."
EVIDENCE = f"{SOURCE} The Panthers did not score in the fourth quarter."


def test_a_faithful_paraphrase_has_no_problem() -> None:
    assert claim_problems("In Santa Clara, the Broncos beat the Panthers 24-10.", [SOURCE], EVIDENCE) == []


def test_changed_numbers_names_and_negations_are_named() -> None:
    assert claim_problems("The Broncos won 31-10.", [SOURCE], EVIDENCE) == ["number 31 is not in the evidence"]
    assert claim_problems("The Denver Broncos beat the Seattle Seahawks.", [SOURCE], EVIDENCE) == \
        ["'Seattle' is not in the evidence", "'Seahawks' is not in the evidence"]
    assert claim_problems("The Broncos did not win Super Bowl 50.", [SOURCE], EVIDENCE) == \
        ["negated, but the closest evidence is not"]
    negated = "The Panthers did not score in the fourth quarter."
    assert claim_problems("The Panthers never scored in the fourth quarter.", [negated], EVIDENCE) == []


def test_the_heuristic_judge_flags_an_edited_claim_that_is_still_similar(embedder) -> None:
    judge = HeuristicJudge(embedder, correctness_threshold=0.7, grounding_threshold=0.6)
    question = Question(id="q", question="Who won Super Bowl 50?", reference="Denver Broncos")
    context = [RetrievedChunk(chunk_id="c", doc_id="d", text=EVIDENCE, score=0.9, rank=1)]
    edited = AnswerRecord(question_id="q", answer=SOURCE.replace("Carolina", "Seattle"))
    faithful = AnswerRecord(question_id="q", answer=SOURCE)
    v_edited, v_faithful = judge.judge([JudgeItem(question, edited, context), JudgeItem(question, faithful, context)])
    assert v_edited.hallucinated and "'Seattle' is not in the evidence" in v_edited.unsupported_claims[0]
    assert not v_faithful.hallucinated and v_faithful.grounded_fraction == 1.0
