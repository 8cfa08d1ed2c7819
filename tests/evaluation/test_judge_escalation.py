"""Judge economy: confidence per verdict, escalation of unsure verdicts (split votes, middling scores) from a cheap
judge to a stronger one, and what judging cost, against a scripted server with two judge models."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable

import pytest

from reasonloop.evaluation.aggregate import judge_spend
from reasonloop.evaluation.judges import JudgeItem
from reasonloop.providers import build_judge
from reasonloop.schemas import AnswerRecord, Question, RetrievedChunk
from reasonloop.settings import Settings

from ..support.openai_server import OpenAIServer, Reply, user_text

CONTEXT = [RetrievedChunk(chunk_id="c1", doc_id="d1", text="The Broncos won.", score=0.9, rank=1)]
ITEMS = [JudgeItem(Question(id=kind, question="Who won?", reference="Broncos"),
                   AnswerRecord(question_id=kind, answer=f"{kind} answer"), CONTEXT)
         for kind in ("sure", "split", "middling")]


def test_unsure_verdicts_go_to_the_stronger_judge_and_their_cost_adds_up(
        make_settings: Callable[..., Settings], embedder: object) -> None:
    flips = itertools.cycle([True, False])

    def responder(request: dict) -> Reply:
        kind = user_text(request).split("<answer>")[1].split(" answer</answer>")[0]
        if request["model"] == "strong":
            return Reply(content=json.dumps({"correct": False, "score": 0.0, "reason": "strong says no"}))
        correct = next(flips) if kind == "split" else True
        score = {"sure": 1.0, "middling": 0.6}.get(kind, float(correct))
        return Reply(content=json.dumps({"correct": correct, "score": score, "reason": "cheap"}))

    with OpenAIServer(responder) as server:
        endpoint = {"provider": "openai", "base_url": server.base_url, "max_retries": 0}
        settings = make_settings(
            judge={**endpoint, "model": "cheap", "votes": 3,
                   "escalate": {"model": "strong", "base_url": server.base_url, "min_confidence": 0.5}},
            pricing={"cheap": {"input_per_1m": 1.0, "output_per_1m": 2.0},
                     "strong": {"input_per_1m": 10.0, "output_per_1m": 20.0}})
        judge = build_judge(settings, embedder)
        sure, split, middling = judge.judge(ITEMS)
    strong_calls = [c for c in server.calls if c["model"] == "strong"]
    assert len(strong_calls) == 2 and len(server.calls) == 3 * 3 + 2  # three votes each, two escalations
    assert sure.correct and not sure.escalated and sure.confidence == 1.0
    assert split.escalated and middling.escalated and not split.correct and not middling.correct
    cheap_cost = 3 * (11 * 1.0 + 7 * 2.0) / 1e6  # the server reports 11 prompt and 7 completion tokens per call
    assert sure.judge_cost_usd == pytest.approx(cheap_cost)
    assert split.judge_cost_usd == pytest.approx(cheap_cost + (11 * 10.0 + 7 * 20.0) / 1e6)
    assert judge_spend([sure, split, middling]) == {"n_escalated": 2, "judge_tokens": 11 * 18,
                                                    "judge_cost_usd": pytest.approx(3 * cheap_cost + 2 * 250e-6)}
    assert judge.version == "judge_answer@v2+judge_answer@v2" and "escalate<0.5" in judge.identity


def test_the_offline_judge_escalates_by_its_distance_from_the_threshold(
        make_settings: Callable[..., Settings], embedder: object) -> None:
    """Heuristic first: exact and unrelated answers are sure calls, an answer near the threshold is not."""
    def responder(request: dict) -> Reply:
        return Reply(content=json.dumps({"correct": True, "score": 0.9, "reason": "strong"}))

    items = [JudgeItem(Question(id=str(i), question="Who won Super Bowl 50?", reference="Denver Broncos"),
                       AnswerRecord(question_id=str(i), answer=answer), CONTEXT)
             for i, answer in enumerate(["Denver Broncos", "The game was played in a stadium in California.",
                                         "Denver Nuggets"])]
    with OpenAIServer(responder) as server:
        settings = make_settings(judge={"escalate": {"model": "strong", "base_url": server.base_url,
                                                     "min_confidence": 0.5}})
        verdicts = build_judge(settings, embedder).judge(items)
    first = build_judge(make_settings(), embedder).judge(items)  # the same judge without escalation
    assert [v.confidence is not None and v.confidence >= 0.5 for v in first] == [not v.escalated for v in verdicts]
    assert len(server.calls) == sum(v.escalated for v in verdicts)
    assert first[0].confidence == 1.0 and first[1].confidence == 1.0  # right, and plainly wrong: sure calls
    assert first[2].confidence < 0.1 and verdicts[2].escalated and verdicts[2].correct  # 0.70 vs threshold 0.7
    assert len(server.calls) == 1
