"""Strategies through the answer task against a scripted OpenAI-compatible server (counting its calls), and the
complexity router."""

from __future__ import annotations

import json

import pytest

from reasonloop.evaluation.aggregate import collect_results, summarize_results
from reasonloop.providers import build_openai_chat
from reasonloop.reasoning.answering import answer_questions
from reasonloop.reasoning.config import CallLimits, LLMConfig, ReasoningConfig
from reasonloop.reasoning.routing import complexity, route_of
from reasonloop.schemas import Question, RetrievedChunk
from reasonloop.text import normalize_answer

from ..conftest import make_reasoner
from ..support.openai_server import OpenAIServer, Reply, system_text

CHUNK = RetrievedChunk(chunk_id="sb::0::aa", doc_id="sb", rank=1, score=0.9, dense_score=0.82,
                       text="The Denver Broncos defeated the Carolina Panthers to win Super Bowl 50.")
RUNNER_UP = RetrievedChunk(chunk_id="rh::0::bb", doc_id="rh", rank=2, score=0.1, dense_score=0.31,
                           text="The Rhine flows through Germany.")
FACTOID = Question(id="f", question="Who won Super Bowl 50?", reference="Denver Broncos")
HARD = Question(id="h", question="Why did the Broncos win Super Bowl 50 and how did their defense compare with "
                                 "the Panthers' offense before and after halftime?", reference="defense")


def reply(answer: str) -> Reply:
    return Reply(content=json.dumps({"answer": answer, "citations": ["sb::0::aa"], "confidence": 0.9}),
                 prompt_tokens=100, completion_tokens=10)


def answer(server: OpenAIServer, questions: list[Question], **reasoning: object) -> list:  # type: ignore[type-arg]
    model = build_openai_chat(LLMConfig(provider="openai", model="m", base_url=server.base_url, max_retries=0))
    return answer_questions(questions, [[CHUNK, RUNNER_UP]] * len(questions), make_reasoner(model, **reasoning),
                               CallLimits(max_concurrency=3))


def test_self_consistency_votes_over_normalized_answers() -> None:
    votes = iter(["Denver Broncos", "the Denver Broncos.", "Carolina Panthers", "denver broncos", "Carolina"])
    with OpenAIServer(lambda r: reply(next(votes))) as server:
        [record] = answer(server, [FACTOID], strategy="self_consistency",
                          self_consistency={"samples": 5, "temperature": 0.9})
    assert len(server.calls) == 5 and {c["temperature"] for c in server.calls} == {0.9}
    assert record.strategy == "self_consistency" and normalize_answer(record.answer) == "denver broncos"
    assert record.confidence == pytest.approx(3 / 5)  # agreement ratio, not the model's own confidence
    assert (record.tokens_in, record.tokens_out) == (500, 50) and len(record.samples) == 5


def test_a_failed_sample_does_not_sink_the_vote() -> None:
    replies = iter([Reply(status=500), reply("Denver Broncos"), reply("Denver Broncos")])
    with OpenAIServer(lambda r: next(replies)) as server:
        [record] = answer(server, [FACTOID], strategy="self_consistency", self_consistency={"samples": 3})
    assert len(server.calls) == 3 and record.error is None and record.confidence == pytest.approx(2 / 3)
    assert record.n_calls == 3  # the failed call counts: it was made


def test_direct_uses_its_own_prompt_and_a_question_can_override_the_run() -> None:
    chosen = FACTOID.model_copy(update={"id": "o", "metadata": {"strategy": "chain_of_thought"}})
    with OpenAIServer(lambda r: reply("Denver Broncos")) as server:
        direct, overridden = answer(server, [FACTOID, chosen], strategy="direct")
    prompts = sorted("steps" in system_text(c) for c in server.calls)
    assert prompts == [False, True]  # one direct prompt, one chain-of-thought prompt
    assert (direct.strategy, direct.prompt) == ("direct", "direct_answer@v1")
    assert (overridden.strategy, overridden.prompt) == ("chain_of_thought", "chain_of_thought@v1")


def test_adaptive_routes_by_complexity_and_records_the_route() -> None:
    with OpenAIServer(lambda r: reply("Denver Broncos")) as server:
        easy, hard = answer(server, [FACTOID, HARD], strategy="adaptive", self_consistency={"samples": 3})
    assert (easy.route, easy.strategy) == ("simple", "direct") and easy.complexity < 0.35
    assert (hard.route, hard.strategy) == ("complex", "self_consistency") and hard.complexity >= 0.65
    assert len(server.calls) == 1 + 3
    results = collect_results([FACTOID, HARD], [[CHUNK, RUNNER_UP]] * 2, [easy, hard], [None, None])
    summary = summarize_results(results, complex_calls=3)
    assert (summary.route_simple, summary.route_moderate, summary.route_complex) == (1, 0, 1)
    assert summary.tokens_saved_vs_complex == 2 * 3 * 110 - (110 + 3 * 110)  # vs both questions on 3 samples
    assert summarize_results(results).route_simple is None  # not adaptive: no routes, no savings claimed


def test_complexity_rises_with_length_cues_and_weak_or_ambiguous_retrieval() -> None:
    confident = complexity(FACTOID, [CHUNK, RUNNER_UP])
    weak = [CHUNK.model_copy(update={"dense_score": 0.3}), RUNNER_UP.model_copy(update={"dense_score": 0.29})]
    assert complexity(FACTOID, weak) > confident + 0.15
    assert complexity(HARD, [CHUNK, RUNNER_UP]) > confident + 0.3
    assert complexity(FACTOID, []) > complexity(FACTOID, [CHUNK, RUNNER_UP])  # nothing retrieved: harder
    cfg = ReasoningConfig()
    assert [route_of(s, cfg) for s in (0.1, 0.5, 0.9)] == ["simple", "moderate", "complex"]
    with pytest.raises(ValueError, match="must not exceed"):
        ReasoningConfig(simple_below=0.8, complex_from=0.2)
