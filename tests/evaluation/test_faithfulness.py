"""Claim checks beyond similarity: the edits SummEdits makes (a changed name, number, word or negation) leave a
claim as close to its source sentence as ever, so the heuristic judge checks them explicitly. Each rule has a planted
edit it must name and a faithful paraphrase it must pass; a sentence quoted verbatim (SQuAD extractive answers)
passes every rule."""

from __future__ import annotations

from reasonloop.evaluation.faithfulness import claim_problems
from reasonloop.evaluation.judges import HeuristicJudge, JudgeItem
from reasonloop.schemas import AnswerRecord, Question, RetrievedChunk
from reasonloop.text import split_sentences

SOURCE = "The Denver Broncos defeated the Carolina Panthers 24-10 to win Super Bowl 50 in Santa Clara."
NEGATED = "The Panthers did not score in the fourth quarter."
CROWD = "Tickets for the game were expensive, and fans waited three hours to enter the stadium."
EVIDENCE = f"{SOURCE} {NEGATED}"


def test_a_faithful_paraphrase_has_no_problem() -> None:
    assert claim_problems("In Santa Clara, the Broncos beat the Panthers 24-10.", [SOURCE], EVIDENCE) == []


def test_changed_numbers_names_and_negations_are_named() -> None:
    assert claim_problems("The Broncos won 31-10.", [SOURCE], EVIDENCE) == ["number 31 is not in the evidence"]
    assert claim_problems("The Denver Broncos beat the Seattle Seahawks.", [SOURCE], EVIDENCE) == \
        ["'Seattle' is not in the evidence", "'Seahawks' is not in the evidence"]
    assert claim_problems("The Broncos did not win Super Bowl 50.", [SOURCE], EVIDENCE) == \
        ["'not win Super Bowl' is negated, but no evidence sentence negates it"]
    assert claim_problems("The Panthers never scored in the fourth quarter.", [NEGATED], EVIDENCE) == []


def test_number_words_are_numbers() -> None:
    evidence = f"{EVIDENCE} {CROWD}"
    assert claim_problems("Fans waited four hours to get in.", [CROWD], evidence) == ["number 4 is not in the evidence"]
    assert claim_problems("Fans waited 3 hours to get in.", [CROWD], evidence) == []


def test_a_changed_time_unit_is_named() -> None:
    evidence = f"{EVIDENCE} {CROWD}"
    assert claim_problems("Fans waited three days to get in.", [CROWD], evidence) == ["'days' is not in the evidence"]
    assert claim_problems("It took fans three hours to get into the stadium.", [CROWD], evidence) == []


def test_a_word_swapped_for_its_opposite_is_named() -> None:
    evidence = f"{EVIDENCE} {CROWD}"
    assert claim_problems("Tickets for the game were cheap.", [CROWD], evidence) == \
        ["'cheap' where the evidence says 'expensive'"]
    assert claim_problems("Tickets for the game were costly.", [CROWD], evidence) == []  # a synonym is no opposite
    satisfied = "The fans were satisfied with the stadium, and the coach informed the players."
    assert claim_problems("The fans were dissatisfied with the stadium.", [satisfied], satisfied) == \
        ["'dissatisfied' where the evidence says 'satisfied'"]
    assert claim_problems("The coach misinformed the players.", [satisfied], satisfied) == \
        ["'misinformed' where the evidence says 'informed'"]
    assert claim_problems("The coach briefed the players, and the fans were content.", [satisfied], satisfied) == []
    plan = "The team offers a comprehensive training plan."
    assert claim_problems("The team offers a basic training plan.", [plan], plan) == \
        ["'basic' where the evidence says 'comprehensive'"]


def test_a_negation_is_aligned_by_what_it_negates() -> None:
    # a long claim whose closest sentence is not negated, but whose negation the evidence states elsewhere
    assert claim_problems("The Broncos won 24-10, and the Panthers did not score in the fourth quarter.", [SOURCE],
                          EVIDENCE) == []
    assert claim_problems("The Broncos won 24-10, but the Panthers did not reach Santa Clara.", [SOURCE],
                          EVIDENCE) == ["'not reach Santa Clara' is negated, but no evidence sentence negates it"]
    assert claim_problems("The Panthers failed to win Super Bowl 50.", [SOURCE], EVIDENCE) == \
        ["'failed win Super Bowl' is negated, but no evidence sentence negates it"]


def test_a_negation_needs_evidence_that_denies_the_same_thing() -> None:
    # NEGATED shares "fourth quarter" with the claim, but denies scoring, not celebrating
    assert claim_problems("The Broncos did not celebrate in the fourth quarter.", [SOURCE], EVIDENCE) == \
        ["'not celebrate fourth quarter' is negated, but no evidence sentence negates it"]
    # an adverb is not what is denied: "not really score" denies "score", which NEGATED denies too
    assert claim_problems("The Panthers did not really score in the fourth quarter.", [SOURCE], EVIDENCE) == []


def test_no_matter_is_no_negation() -> None:
    assert claim_problems("The Broncos won in Santa Clara, no matter the weather.", [SOURCE], EVIDENCE) == []
    rain = "The Broncos won in Santa Clara no matter how hard it rained."
    assert claim_problems("The Broncos won in Santa Clara while it rained hard.", [rain], rain) == []


def test_a_claimed_error_needs_one_in_the_evidence() -> None:
    assert claim_problems("The Denver coach misled the players.", [SOURCE], EVIDENCE) == \
        ["'misled' says someone erred, but the evidence does not"]
    foul = "The referee wrongly disallowed a Panthers touchdown."
    assert claim_problems("The referee incorrectly disallowed a Panthers touchdown.", [foul], foul) == []


def test_a_dropped_negation_is_named() -> None:
    assert claim_problems("The Panthers scored in the fourth quarter.", [NEGATED], EVIDENCE) == \
        ["the closest evidence says 'not score fourth quarter', the claim drops the negation"]
    assert claim_problems("The Panthers were held scoreless in the fourth quarter.", [NEGATED], EVIDENCE) == []


def test_a_restriction_needs_one_in_the_closest_evidence() -> None:
    assert claim_problems("Only the Broncos played in Santa Clara.", [SOURCE], EVIDENCE) == \
        ["restricted ('only', 'except'...), but the closest evidence is not"]
    only = "Only the Broncos scored in the fourth quarter."
    assert claim_problems("The Broncos were the only team to score in the fourth quarter.", [only], only) == []


def test_a_sentence_quoted_verbatim_passes_every_rule() -> None:
    evidence = (f"{EVIDENCE} {CROWD} The English name comes from Old Norse Norðmaðr, not from Latin. "
                "Nor did the club sell more than twelve thousand tickets, except to members only. "
                "The referee wrongly disallowed a touchdown, no matter what the replay showed.")
    for sentence in split_sentences(evidence):
        assert claim_problems(sentence, [sentence], evidence) == [], sentence


def test_the_heuristic_judge_flags_an_edited_claim_that_is_still_similar(embedder) -> None:
    judge = HeuristicJudge(embedder, correctness_threshold=0.7, grounding_threshold=0.6)
    question = Question(id="q", question="Who won Super Bowl 50?", reference="Denver Broncos")
    context = [RetrievedChunk(chunk_id="c", doc_id="d", text=EVIDENCE, score=0.9, rank=1)]
    edited = AnswerRecord(question_id="q", answer=SOURCE.replace("Carolina", "Seattle"))
    faithful = AnswerRecord(question_id="q", answer=SOURCE)
    v_edited, v_faithful = judge.judge([JudgeItem(question, edited, context), JudgeItem(question, faithful, context)])
    assert v_edited.hallucinated and "'Seattle' is not in the evidence" in v_edited.unsupported_claims[0]
    assert not v_faithful.hallucinated and v_faithful.grounded_fraction == 1.0
