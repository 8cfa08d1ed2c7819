"""The multi-step strategies (ReAct, verification loop, parallel paths) against a scripted OpenAI-compatible server
that counts calls, the same strategies on the offline extractive reasoner, and the tokens-per-minute limiter."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import pytest

from reasonloop.providers import build_openai_chat
from reasonloop.reasoning.answer_store import answer_key
from reasonloop.reasoning.answering import answer_questions
from reasonloop.reasoning.config import CallLimits, LLMConfig, OptimizeConfig
from reasonloop.reasoning.extractive import ExtractiveChatModel
from reasonloop.reasoning.llm_calls import Pacer, estimate_tokens, run_coroutine
from reasonloop.reasoning.prompts import format_chunks
from reasonloop.schemas import Question, RetrievedChunk

from ..conftest import make_reasoner
from ..support.openai_server import OpenAIServer, Reply, system_text, user_text

WINNER = RetrievedChunk(chunk_id="sb::0::aa", doc_id="sb", rank=1, score=0.9, dense_score=0.8,
                        text="Super Bowl 50 was an American football game. The Denver Broncos defeated the Carolina "
                             "Panthers 24-10 to win Super Bowl 50.")
RHINE = RetrievedChunk(chunk_id="rh::0::bb", doc_id="rh", rank=2, score=0.2, dense_score=0.3,
                       text="The Rhine is a European river. It flows through Switzerland and Germany.")
QUESTION = Question(id="q", question="Which team won Super Bowl 50?", reference="Denver Broncos")
LIMITS = CallLimits(max_concurrency=4)


def model_answer(answer: str, confidence: float = 0.8, cited: str = "sb::0::aa") -> str:
    return json.dumps({"answer": answer, "citations": [cited], "confidence": confidence,
                       "reasoning": {"steps": ["read the chunk"]}})


class FakeSearch:
    """The retriever tool: records every query, returns fixed hits."""

    def __init__(self, hits: list[RetrievedChunk]) -> None:
        self.hits, self.queries = hits, []

    def __call__(self, query: str, k: int) -> list[RetrievedChunk]:
        self.queries.append(query)
        return self.hits[:k]


def run_one(server: OpenAIServer, strategy: str, context: list[RetrievedChunk] | None = None,
            search: FakeSearch | None = None, **reasoning: Any) -> Any:
    model = build_openai_chat(LLMConfig(provider="openai", model="m", base_url=server.base_url, max_retries=0))
    reasoner = make_reasoner(model, search=search, strategy=strategy, **reasoning)
    [record] = answer_questions([QUESTION], [context if context is not None else [WINNER, RHINE]], reasoner,
                                   LIMITS)
    return record


def test_react_searches_with_the_retriever_then_finishes() -> None:
    turns = iter([json.dumps({"thought": "I need the game's result", "action": "search", "query": "Super Bowl 50"}),
                  json.dumps({"thought": "the chunk says Denver", "action": "finish", "answer": "Denver Broncos",
                              "citations": ["sb::0::aa"], "confidence": 0.9})])
    search = FakeSearch([WINNER])
    with OpenAIServer(lambda r: Reply(content=next(turns), prompt_tokens=100, completion_tokens=20)) as server:
        record = run_one(server, "react", context=[], search=search)
    assert len(server.calls) == 2 and search.queries == ["Super Bowl 50"]
    first, second = (user_text(c) for c in server.calls)
    assert "<steps_left>4</steps_left>" in first and '<chunk id="sb::0::aa"' not in first
    assert '<observation>\n<chunk id="sb::0::aa"' in second and "<steps_left>3</steps_left>" in second
    assert record.error is None and record.answer == "Denver Broncos" and record.citations == ["sb::0::aa"]
    assert [(s.name, s.kind) for s in record.steps] == [("step:1", "llm"), ("search", "tool"), ("step:2", "llm")]
    assert record.searched == [WINNER] and record.evidence([]) == [WINNER]  # the judge sees what the agent read
    assert record.n_calls == 2 and (record.tokens_in, record.tokens_out) == (200, 40)


def test_react_is_bounded_by_max_steps() -> None:
    search_again = json.dumps({"thought": "not sure yet", "action": "search", "query": "more"})
    with OpenAIServer(lambda r: Reply(content=search_again)) as server:
        record = run_one(server, "react", context=[], search=FakeSearch([RHINE]), react={"max_steps": 3})
    assert len(server.calls) == 3 and "<steps_left>1</steps_left>" in user_text(server.calls[-1])
    assert record.error is not None and "no answer within 3 steps" in record.error
    assert record.n_calls == 3 and [s.name for s in record.steps if s.kind == "tool"] == ["search"] * 2  # none wasted


def test_react_turns_that_fail_fail_the_question() -> None:
    blank = json.dumps({"thought": "done", "action": "finish", "answer": " "})
    for content, error, calls in [("no json at all", "reply did not match ReactTurn: no JSON object", 2),
                                  (blank, "without an answer", 1)]:  # a turn that is not the schema is asked again
        with OpenAIServer(lambda r, content=content: Reply(content=content)) as server:
            record = run_one(server, "react", context=[], search=FakeSearch([WINNER]))
        assert len(server.calls) == calls and error in (record.error or ""), record.error


def test_react_reads_up_front_context_when_the_run_gives_it() -> None:
    finish = json.dumps({"thought": "the observation answers it", "action": "finish", "answer": "Denver Broncos",
                         "citations": ["sb::0::aa"], "confidence": 0.9})
    with OpenAIServer(lambda r: Reply(content=finish)) as server:
        model = build_openai_chat(LLMConfig(provider="openai", model="m", base_url=server.base_url, max_retries=0))
        reasoner = make_reasoner(model, search=FakeSearch([]), optimize=OptimizeConfig(skip_retrieval=[]),
                                 strategy="react")
        [record] = answer_questions([QUESTION], [[WINNER]], reasoner, LIMITS)
    assert '<observation>\n<chunk id="sb::0::aa"' in user_text(server.calls[0]) and record.answer == "Denver Broncos"


def test_a_failed_self_check_gets_exactly_one_revision() -> None:
    def responder(request: dict) -> Reply:
        system = system_text(request)
        if "You check a draft answer" in system:
            problems = ["the score 31-24 is not in the context"]
            return Reply(content=json.dumps({"supported": False, "problems": problems}))
        if "You revise a draft answer" in system:
            return Reply(content=model_answer("Denver Broncos, 24-10"))
        return Reply(content=model_answer("Denver Broncos, 31-24"))

    with OpenAIServer(responder) as server:
        record = run_one(server, "verify")
    assert len(server.calls) == 3  # draft, check, revision: no second check
    assert "<answer_to_check>Denver Broncos, 31-24</answer_to_check>" in user_text(server.calls[1])
    assert "the score 31-24 is not in the context" in user_text(server.calls[2])
    assert record.answer == "Denver Broncos, 24-10" and record.verified is False and record.revised
    assert record.prompt == "revise_answer@v1" and [s.name for s in record.steps] == ["answer", "check", "revise"]
    assert json.loads(record.raw_output)["answer"] == "Denver Broncos, 24-10"


@pytest.mark.parametrize(("check", "revision", "verified", "calls"), [
    (Reply(content="not json"), None, None, 3),  # the check could not run (asked twice): the draft stands
    (Reply(content=json.dumps({"supported": False, "problems": ["<draft>x</draft>"]})), Reply(status=500), False, 3),
])
def test_a_broken_check_or_revision_keeps_the_draft(check: Reply, revision: Reply | None, verified: bool | None,
                                                    calls: int) -> None:
    def responder(request: dict) -> Reply:
        system = system_text(request)
        if "You check a draft answer" in system:
            return check
        if "You revise a draft answer" in system and revision is not None:
            return revision
        return Reply(content=model_answer("Denver Broncos"))

    with OpenAIServer(responder) as server:
        record = run_one(server, "verify")
    assert len(server.calls) == calls and record.error is None and record.answer == "Denver Broncos"
    assert record.verified is verified and not record.revised and record.prompt == "chain_of_thought@v1"
    if revision is not None:  # the check's text reaches the revision quoted: it cannot open or close a block
        assert "&lt;draft>x&lt;/draft>" in user_text(server.calls[2])


def test_a_passed_self_check_keeps_the_draft() -> None:
    def responder(request: dict) -> Reply:
        if "You check a draft answer" in system_text(request):
            return Reply(content=json.dumps({"supported": True, "problems": []}))
        return Reply(content=model_answer("Denver Broncos"))

    with OpenAIServer(responder) as server:
        record = run_one(server, "verify")
    assert len(server.calls) == 2 and record.verified is True and not record.revised
    assert record.answer == "Denver Broncos"


def test_parallel_paths_run_concurrently_and_are_synthesized() -> None:
    def responder(request: dict) -> Reply:
        system = system_text(request)
        if "Several independent reasoning paths" in system:
            return Reply(content=model_answer("Denver Broncos", 0.85))
        if "Work analytically" in system:
            return Reply(content=model_answer("the Broncos", 0.6), delay_s=0.5)
        return Reply(content=model_answer("Denver Broncos", 0.9), delay_s=0.5)

    with OpenAIServer(responder) as server:
        record = run_one(server, "parallel_paths")
    assert len(server.calls) == 3
    assert server.times[1] - server.times[0] < 0.4  # both paths were in flight together
    synthesis = user_text(server.calls[2])
    assert synthesis.count('<path name="path_') == 2 and "the Broncos" in synthesis
    assert record.answer == "Denver Broncos" and record.samples == ["the Broncos", "Denver Broncos"]
    assert [s.name for s in record.steps][-1] == "synthesize" and record.n_calls == 3


def test_a_failed_path_leaves_the_synthesis_to_the_others() -> None:
    def responder(request: dict) -> Reply:
        system = system_text(request)
        if "Work analytically" in system:
            return Reply(status=500)
        return Reply(content=model_answer("Denver Broncos"))

    with OpenAIServer(responder) as server:
        record = run_one(server, "parallel_paths")
    assert len(server.calls) == 3 and record.error is None and record.samples == ["Denver Broncos"]
    failed = {s.name: s.error is not None for s in record.steps}
    assert failed == {"path:path_analytical": True, "path:path_systematic": False, "synthesize": False}


def test_a_failed_synthesis_falls_back_to_the_paths_vote() -> None:
    def responder(request: dict) -> Reply:
        system = system_text(request)
        if "Several independent reasoning paths" in system:
            return Reply(status=500)
        return Reply(content=model_answer("Denver Broncos", 0.8))

    with OpenAIServer(responder) as server:
        record = run_one(server, "parallel_paths")
    assert len(server.calls) == 3 and record.error is None and record.answer == "Denver Broncos"
    assert record.confidence == 1.0 and record.prompt.startswith("path_")  # both paths agree


def test_an_unknown_strategy_fails_its_question_not_the_batch() -> None:
    with OpenAIServer(lambda r: Reply(content=model_answer("Denver Broncos"))) as server:
        model = build_openai_chat(LLMConfig(provider="openai", model="m", base_url=server.base_url))
        odd = QUESTION.model_copy(update={"id": "odd", "metadata": {"strategy": "tree_of_thoughts"}})
        records = answer_questions([odd, QUESTION], [[WINNER]] * 2, make_reasoner(model), LIMITS)
    assert "unknown strategy 'tree_of_thoughts'" in (records[0].error or "") and records[1].error is None
    assert len(server.calls) == 1


def test_latency_is_the_strategys_own_time_not_its_wait_for_a_slot() -> None:
    with OpenAIServer(lambda r: Reply(content=model_answer("Denver Broncos"), delay_s=0.2)) as server:
        model = build_openai_chat(LLMConfig(provider="openai", model="m", base_url=server.base_url))
        questions = [QUESTION.model_copy(update={"id": f"q{i}"}) for i in range(4)]
        records = answer_questions(questions, [[WINNER]] * 4, make_reasoner(model), CallLimits(1))
    assert all(0.19 < r.latency_s < 0.4 for r in records), [r.latency_s for r in records]
    starts = sorted(r.steps[0].started_ns for r in records)
    assert all(b - a >= 0.19e9 for a, b in zip(starts, starts[1:], strict=False))  # when each request really left


@pytest.mark.parametrize("strategy", ["direct", "chain_of_thought", "self_consistency", "react", "verify",
                                      "parallel_paths"])
def test_every_strategy_runs_offline_on_the_extractive_reasoner(embedder, strategy: str) -> None:
    search = FakeSearch([WINNER, RHINE])
    reasoner = make_reasoner(ExtractiveChatModel(embedder=embedder), search=search, strategy=strategy)
    context = [] if strategy == "react" else [WINNER, RHINE]  # ReAct gets no up-front context: it searches
    [record] = answer_questions([QUESTION], [context], reasoner, LIMITS)
    assert record.error is None and record.strategy == strategy
    assert record.answer == "The Denver Broncos defeated the Carolina Panthers 24-10 to win Super Bowl 50."
    assert record.n_calls == {"self_consistency": 5, "react": 2, "verify": 2, "parallel_paths": 3}.get(strategy, 1)
    if strategy == "react":
        assert search.queries == [QUESTION.question] and record.searched == [WINNER, RHINE]
    if strategy == "verify":
        assert record.verified is True  # a verbatim quote passes its own check


def test_the_extractive_check_fails_an_unsupported_draft(embedder) -> None:
    model = ExtractiveChatModel(embedder=embedder)
    check = model.check("Pizza was invented on Mars.", ["The Rhine is a European river."])
    assert check["supported"] is False and "Pizza" in check["problems"][0]


def test_react_answers_depend_on_the_index_version_others_do_not() -> None:
    model = build_openai_chat(LLMConfig(provider="openai", model="m", base_url="http://127.0.0.1:9/v1"))
    search = FakeSearch([])
    old, new = make_reasoner(model, search=search), make_reasoner(model, search=search)
    new = replace(new, search_version="another-index")
    for strategy, differs in [("react", True), ("chain_of_thought", False), ("verify", False)]:
        q = QUESTION.model_copy(update={"metadata": {"strategy": strategy}})
        keys = {answer_key(r.plan(q, [WINNER]), q, [WINNER]) for r in (old, new)}
        assert (len(keys) == 2) is differs, strategy


def test_the_token_pacer_spaces_calls_by_their_reserved_tokens() -> None:
    replies = Reply(content=model_answer("Denver Broncos"), prompt_tokens=0, completion_tokens=0)  # no usage: no refund
    with OpenAIServer(lambda r: replies) as server:
        model = build_openai_chat(LLMConfig(provider="openai", model="m", base_url=server.base_url, max_tokens=50))
        questions = [QUESTION.model_copy(update={"id": f"q{i}"}) for i in range(4)]
        reasoner = make_reasoner(model)
        per_call = estimate_tokens(model, reasoner.prompts["reasoning"].to_messages(
            question=QUESTION.question, context=format_chunks([WINNER])))
        tpm = per_call * 60 / 0.5  # one call's reservation every 0.5 s
        answer_questions(questions, [[WINNER]] * 4, reasoner, CallLimits(4, tokens_per_minute=tpm))
    gaps = [b - a for a, b in zip(server.times, server.times[1:], strict=False)]
    assert len(server.calls) == 4 and all(0.4 < g < 0.9 for g in gaps), gaps


def test_the_pacer_refunds_unused_reservations() -> None:
    async def scenario() -> tuple[float, float]:
        pacer = Pacer(per_minute=600)  # 10 units per second
        loop = asyncio.get_running_loop()
        await pacer.wait(10)  # reserves 1 s
        reserved_until = pacer._next - loop.time()
        pacer.settle(reserved=10, used=2)  # only 0.2 s were used
        return reserved_until, pacer._next - loop.time()

    before, after = run_coroutine(scenario())
    assert before == pytest.approx(1.0, abs=0.05) and after == pytest.approx(0.2, abs=0.05)
