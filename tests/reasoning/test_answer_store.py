"""The answer store as reasoning cache and as checkpoint, driven through the answer task and a scripted server
that counts the calls reaching it."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path

from reasonloop.providers import build_openai_chat
from reasonloop.reasoning.answer_store import RecordStore, answer_key, run_identity
from reasonloop.reasoning.answering import answer_questions
from reasonloop.reasoning.config import CallLimits, LLMConfig, Price
from reasonloop.reasoning.prompts import load_prompt
from reasonloop.schemas import Question, RetrievedChunk
from reasonloop.settings import load_settings

from ..conftest import make_reasoner
from ..support.openai_server import OpenAIServer, Reply, user_text

COT = load_prompt(load_settings().prompts.dir, "chain_of_thought")
FREE, LIMITS = Price(input_per_1m=1.0, output_per_1m=1.0), CallLimits(max_concurrency=4)
CHUNK = RetrievedChunk(chunk_id="d::0::aa", doc_id="d", text="Denver won. It was cold.", score=0.9, rank=1)
QUESTIONS = [Question(id=f"q{i}", question=f"Question number {i}?", reference="Denver") for i in range(3)]
ANSWER = json.dumps({"reasoning": {"problem": "p", "context": "c", "steps": ["s"], "verification": "v"},
                     "answer": "Denver", "citations": ["d::0::aa"], "confidence": 0.9})


def run(server: OpenAIServer, store: RecordStore | None, questions: list[Question] = QUESTIONS,
        context: list[RetrievedChunk] | None = None) -> list:  # type: ignore[type-arg]
    model = build_openai_chat(LLMConfig(provider="openai", model="m", base_url=server.base_url, max_retries=0))
    return answer_questions(questions, [context or [CHUNK]] * len(questions), make_reasoner(model, FREE), LIMITS,
                              store)


def test_the_cache_answers_a_repeat_without_calls_or_cost(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "a.sqlite", run="r1", shared=True, ttl_s=3600)
    with OpenAIServer(lambda r: Reply(content=ANSWER)) as server:
        first = run(server, store)
        assert len(server.calls) == 3 and not any(r.cache_hit for r in first)
        second = run(server, RecordStore(tmp_path / "a.sqlite", run="another run", shared=True, ttl_s=3600))
        assert len(server.calls) == 3  # no call reached the endpoint
    assert all(r.cache_hit and r.cost_usd == 0 and r.tokens_in == 0 for r in second)
    assert [r.answer for r in second] == [r.answer for r in first] and first[0].cost_usd > 0


def test_a_changed_dependency_misses_exactly_its_entries(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "a.sqlite", run="r1", shared=True, ttl_s=3600)
    moved = CHUNK.model_copy(update={"chunk_id": "d::0::bb"})  # the index version changed this chunk's content
    with OpenAIServer(lambda r: Reply(content=ANSWER)) as server:
        run(server, store)
        run(server, store, QUESTIONS[:1], context=[moved])
        assert len(server.calls) == 4  # only the question whose context changed
        run(server, store)
        assert len(server.calls) == 4
        model = build_openai_chat(LLMConfig(provider="openai", model="m", base_url=server.base_url))
        plan = make_reasoner(model).plan(QUESTIONS[0], [CHUNK])
        v2 = replace(plan, prompts=(COT.model_copy(update={"version": 2}),))
        assert answer_key(v2, QUESTIONS[0], [CHUNK]) != answer_key(plan, QUESTIONS[0], [CHUNK])
        hotter = build_openai_chat(LLMConfig(provider="openai", model="m", base_url=server.base_url, temperature=0.7))
        assert answer_key(replace(plan, model=hotter), QUESTIONS[0], [CHUNK]) != answer_key(plan, QUESTIONS[0],
                                                                                             [CHUNK])
        expired = RecordStore(tmp_path / "a.sqlite", run="r1", shared=True, ttl_s=1e-6)
        run(server, expired)
        assert len(server.calls) == 7  # past the TTL everything is asked again


def test_the_checkpoint_resumes_only_what_is_missing(tmp_path: Path) -> None:
    """Cache off: a re-run of the same run redoes only failed questions; another run shares nothing."""
    failing = {"Question number 1?"}

    def responder(request: dict) -> Reply:
        return Reply(status=500) if any(q in user_text(request) for q in failing) else Reply(content=ANSWER)

    checkpoint = RecordStore(tmp_path / "a.sqlite", run="run-a", shared=False)
    with OpenAIServer(responder) as server:
        first = run(server, checkpoint)
        assert [r.error is None for r in first] == [True, False, True] and len(server.calls) == 3
        failing.clear()
        resumed = run(server, checkpoint)
        assert len(server.calls) == 4 and [r.cache_hit for r in resumed] == [True, False, True]
        run(server, RecordStore(tmp_path / "a.sqlite", run="run-b", shared=False))
        assert len(server.calls) == 7


def test_answers_are_saved_as_they_finish_not_at_the_end(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "a.sqlite", run="r1", shared=False)
    slow = "Question number 2?"
    reply = {True: Reply(content=ANSWER, delay_s=3.0), False: Reply(content=ANSWER)}
    with OpenAIServer(lambda r: reply[slow in user_text(r)]) as server:
        batch = threading.Thread(target=run, args=(server, store))
        batch.start()
        model = build_openai_chat(LLMConfig(provider="openai", model="m", base_url=server.base_url, max_retries=0))
        plan = make_reasoner(model).plan
        keys = [answer_key(plan(q, [CHUNK]), q, [CHUNK]) for q in QUESTIONS]
        deadline = time.monotonic() + 2.5
        while len(store.get_many(keys)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        saved_mid_batch = set(store.get_many(keys))
        assert batch.is_alive()  # the slow question is still in flight ...
        batch.join()
    assert saved_mid_batch == set(keys[:2])  # ... while the finished ones are already on disk


def test_run_identity_follows_config_questions_and_index() -> None:
    base = run_identity("cfg", QUESTIONS, "idx")
    assert base == run_identity("cfg", list(QUESTIONS), "idx")
    assert len({base, run_identity("cfg2", QUESTIONS, "idx"), run_identity("cfg", QUESTIONS[:2], "idx"),
                run_identity("cfg", QUESTIONS, "idx2")}) == 4


def test_completing_a_run_drops_its_checkpoint_but_not_the_cache(tmp_path: Path) -> None:
    with OpenAIServer(lambda r: Reply(content=ANSWER)) as server:
        checkpoint = RecordStore(tmp_path / "a.sqlite", run="run-a", shared=False)
        cache = RecordStore(tmp_path / "a.sqlite", run="run-c", shared=True)
        run(server, checkpoint, QUESTIONS[:1])
        run(server, cache, QUESTIONS[1:])
        checkpoint.complete()
        cache.complete()
        run(server, checkpoint, QUESTIONS[:1])
        run(server, cache, QUESTIONS[1:])
    assert len(server.calls) == 1 + 2 + 1  # the completed run asks again; the cache still answers


def test_reused_answers_take_this_runs_question_and_plan(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "a.sqlite", run="r", shared=True)
    twin = QUESTIONS[0].model_copy(update={"id": "twin"})  # same text, same context: same key
    with OpenAIServer(lambda r: Reply(content=ANSWER)) as server:
        run(server, store, QUESTIONS[:1])
        [reused] = run(server, store, [twin])
    assert len(server.calls) == 1 and reused.cache_hit and reused.question_id == "twin"
