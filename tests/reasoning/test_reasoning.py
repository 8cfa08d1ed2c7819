"""The extractive reasoner, the answer task and both judges; LLM paths go through the real HTTP client."""

from __future__ import annotations

import json
from unittest.mock import patch

import pytest
from langchain_core.language_models import FakeListChatModel

from reasonloop.evaluation.config import JudgeConfig
from reasonloop.evaluation.judges import HeuristicJudge, JudgeItem, LLMJudge
from reasonloop.providers import build_openai_chat
from reasonloop.reasoning.answering import answer_questions
from reasonloop.reasoning.config import CallLimits, LLMConfig, Price
from reasonloop.reasoning.extractive import ExtractiveChatModel
from reasonloop.reasoning.prompts import load_prompt
from reasonloop.schemas import AnswerRecord, Question, RetrievedChunk
from reasonloop.settings import load_settings

from ..conftest import make_reasoner
from ..support.openai_server import OpenAIServer, Reply, system_text, user_text

PROMPTS = load_settings().prompts.dir
FREE = Price(input_per_1m=0, output_per_1m=0)
UNPACED = CallLimits(max_concurrency=4)
COT = load_prompt(PROMPTS, "chain_of_thought")
JUDGE = load_prompt(PROMPTS, "judge_answer")
QUESTION = Question(id="q1", question="Which team won Super Bowl 50?", reference="Denver Broncos")
CONTEXT = [
    RetrievedChunk(chunk_id="sb::0::aa", doc_id="sb", rank=1, score=0.8,
                   text="Super Bowl 50 was an American football game. The Denver Broncos defeated the Carolina "
                        "Panthers 24-10 to win Super Bowl 50. The game was played in California."),
    RetrievedChunk(chunk_id="rh::0::bb", doc_id="rh", rank=2, score=0.2,
                   text="The Rhine is a European river. It flows through Switzerland and Germany."),
]


def test_extractive_model_quotes_and_cites_the_best_sentence(embedder) -> None:
    model = ExtractiveChatModel(embedder=embedder)
    [record] = answer_questions([QUESTION], [CONTEXT], make_reasoner(model), UNPACED)
    assert record.error is None
    assert record.answer == "The Denver Broncos defeated the Carolina Panthers 24-10 to win Super Bowl 50."
    assert record.citations == ["sb::0::aa"]
    assert record.reasoning.steps and "sb::0::aa" in record.reasoning.verification
    assert 0.5 < record.confidence <= 1.0
    assert record.tokens_in > 50 and record.tokens_out > 10 and record.cost_usd == 0.0
    assert json.loads(record.raw_output)["answer"] == record.answer


def test_extractive_model_says_when_there_is_no_context(embedder) -> None:
    [record] = answer_questions([QUESTION], [[]], make_reasoner(ExtractiveChatModel(embedder=embedder)), UNPACED)
    assert record.answer == "The context does not contain the answer." and record.confidence == 0.0


def test_heuristic_judge(embedder) -> None:
    judge = HeuristicJudge(embedder, correctness_threshold=0.7, grounding_threshold=0.6)
    good = AnswerRecord(question_id="q1", answer="The Denver Broncos defeated the Carolina Panthers 24-10 to win "
                                                 "Super Bowl 50.")
    bad = AnswerRecord(question_id="q1", answer="The Rhine flows through Switzerland. Pizza was invented on Mars.")
    v_good, v_bad = judge.judge([JudgeItem(QUESTION, good, CONTEXT), JudgeItem(QUESTION, bad, CONTEXT)])
    assert v_good.correct and v_good.correctness == 1.0 and not v_good.exact_match
    assert v_good.grounded_fraction == 1.0 and not v_good.hallucinated
    assert not v_bad.correct and v_bad.grounded_fraction == 0.5
    assert v_bad.hallucinated and len(v_bad.unsupported_claims) == 1
    assert v_bad.unsupported_claims[0].startswith("Pizza was invented on Mars. (closest context sentence at cosine")


def _cot_reply(answer: str, cite: str) -> str:
    return json.dumps({"reasoning": {"problem": "p", "context": "c", "steps": ["s"], "verification": "v"},
                       "answer": answer, "citations": [cite], "confidence": 0.9})


def test_answer_task_over_http_records_usage_cost_and_failures() -> None:
    def responder(request: dict) -> Reply:
        if "Rhine" in user_text(request):
            return Reply(content="I cannot produce JSON today")
        return Reply(content=f"```json\n{_cot_reply('Denver Broncos', 'sb::0::aa')}\n```",
                     prompt_tokens=1000, completion_tokens=200)

    questions = [QUESTION, Question(id="q2", question="Where does the Rhine flow?", reference="Germany")]
    with OpenAIServer(responder) as server:
        model = build_openai_chat(LLMConfig(provider="openai", model="m", base_url=server.base_url, max_retries=0))
        price = Price(input_per_1m=2.0, output_per_1m=10.0)
        ok, broken = answer_questions(questions, [CONTEXT[:1], CONTEXT[1:]], make_reasoner(model, price),
                                         CallLimits(4))
    assert len(server.calls) == 3  # the prose reply was asked for again once, saying what was wrong
    assert server.calls[0]["messages"][0]["role"] == "system"
    assert ok.answer == "Denver Broncos" and ok.citations == ["sb::0::aa"] and ok.error is None
    assert (ok.tokens_in, ok.tokens_out) == (1000, 200)
    assert ok.cost_usd == pytest.approx(price.cost_usd(1000, 200)) == pytest.approx(0.004)
    repair = [c for c in server.calls if len(c["messages"]) == 4]
    assert len(repair) == 1
    assert repair[0]["messages"][2] == {"role": "assistant", "content": "I cannot produce JSON today"}
    assert "reply did not match ModelAnswer: no JSON object" in repair[0]["messages"][3]["content"]
    # still prose: kept as the answer, flagged, not failed
    assert broken.error is None and broken.parse_fallback and broken.answer == "I cannot produce JSON today"
    assert broken.schema_valid is False and [s.name for s in broken.steps] == ["answer", "answer:repair"]
    assert broken.raw_output == "I cannot produce JSON today" and not ok.parse_fallback


def test_answer_task_records_http_errors_without_stopping_the_batch() -> None:
    with OpenAIServer(lambda r: Reply(status=500)) as server:
        model = build_openai_chat(LLMConfig(provider="openai", model="m", base_url=server.base_url))
        [record] = answer_questions([QUESTION], [CONTEXT], make_reasoner(model), CallLimits(1, max_retries=1))
    assert record.error is not None and "Error code: 500" in record.error and "after 2 attempts" in record.error
    assert len(server.calls) == 2 and record.steps[0].attempts == 2  # one try + one retry


def answer_over(server: OpenAIServer, n: int = 1, limits: CallLimits | None = None, **llm: float
                ) -> list[AnswerRecord]:
    """`n` questions through a model on `server`; the retries and limits of `llm` (an LLMConfig) unless given."""
    cfg = LLMConfig(provider="openai", model="m", base_url=server.base_url, **llm)
    questions = [QUESTION.model_copy(update={"id": f"q{i}"}) for i in range(n)]
    return answer_questions(questions, [CONTEXT] * n, make_reasoner(build_openai_chat(cfg)), limits or cfg.limits())


def test_429_is_retried_after_the_servers_retry_after() -> None:
    replies = iter([Reply(status=429, headers={"Retry-After": "1"}), Reply(content=_cot_reply("Denver", "sb::0::aa"))])
    with OpenAIServer(lambda r: next(replies)) as server:
        [record] = answer_over(server, max_retries=2)
    assert len(server.calls) == 2 and record.error is None and record.answer == "Denver"
    assert server.times[1] - server.times[0] >= 0.9  # waited as told, not the client's own ~0.5 s backoff


def test_a_timed_out_call_is_retried_then_recorded_as_failed() -> None:
    with OpenAIServer(lambda r: Reply(content=_cot_reply("late", "sb::0::aa"), delay_s=1.5)) as server:
        [record] = answer_over(server, timeout_s=0.3, max_retries=1)
    assert len(server.calls) == 2 and record.error is not None and "Timeout" in record.error


def test_requests_per_minute_spaces_call_starts() -> None:
    reply = Reply(content=_cot_reply("Denver", "sb::0::aa"))
    with OpenAIServer(lambda r: reply) as server:
        records = answer_over(server, n=5, limits=CallLimits(5, requests_per_minute=300), max_retries=0)
    gaps = [b - a for a, b in zip(server.times, server.times[1:], strict=False)]
    assert len(server.calls) == 5 and all(r.error is None for r in records)
    assert min(gaps) >= 0.15 and server.times[-1] - server.times[0] >= 0.75  # one start per 0.2 s, no burst


def test_llm_judge_parses_repairs_and_records_errors() -> None:
    verdict = json.dumps({"correct": True, "score": 1.0, "reason": "same team", "relevance": 0.9,
                          "reasoning": {"consistency": 1.0, "completeness": 0.5, "clarity": 0.6},
                          "claims": [{"claim": "Broncos won", "supported": True},
                                     {"claim": "It snowed", "supported": False}]})
    replies = {"good": [verdict], "repair": ["Sure! Here it is", verdict], "broken": ["no", "still no"]}

    def responder(request: dict) -> Reply:
        assert "strict evaluator" in system_text(request)
        assert "<reasoning>\n(no reasoning given)\n</reasoning>" in user_text(request)
        key = next(k for k in replies if f"<answer>{k}</answer>" in user_text(request))
        attempt = sum(1 for m in request["messages"] if m["role"] == "assistant")
        return Reply(content=replies[key][attempt])

    items = [JudgeItem(QUESTION, AnswerRecord(question_id="q1", answer=key), CONTEXT) for key in replies]
    with OpenAIServer(responder) as server:
        judge = LLMJudge(build_openai_chat(JudgeConfig(model="j", base_url=server.base_url, max_retries=0)), JUDGE,
                         CallLimits(2))
        good, repaired, broken = judge.judge(items)
    assert len(server.calls) == 5  # 1 + 2 (one repair) + 2 (one repair, still broken)
    assert good.correct and good.correctness == 1.0 and good.grounded_fraction == 0.5
    assert good.hallucinated and good.unsupported_claims == ["It snowed"]
    assert good.relevance == 0.9 and good.reasoning_quality == pytest.approx(0.7)
    spent = {"judge_tokens_in", "judge_tokens_out"}
    assert repaired.model_dump(exclude=spent) == good.model_dump(exclude=spent)
    assert repaired.judge_tokens_in == 2 * good.judge_tokens_in > 0  # the repair request is paid for too
    assert broken.judge_error == "unparseable verdict: still no" and not broken.correct
    assert judge.version == "judge_answer@v2"


def test_judge_votes_give_a_majority_agreement_and_a_flaky_flag() -> None:
    """Five votes per answer: one answer gets 3 correct / 1 not / 1 malformed twice, the other 5 unanimous."""
    def vote(correct: bool, score: float) -> str:
        return json.dumps({"correct": correct, "score": score, "reason": f"{correct}", "claims": []})

    first = iter([vote(True, 0.9), vote(False, 0.2), "junk", vote(True, 0.8), vote(True, 1.0)])

    def responder(request: dict) -> Reply:
        if "<answer>split</answer>" not in user_text(request):
            return Reply(content=vote(True, 1.0))
        repair = any(m["role"] == "assistant" for m in request["messages"])
        return Reply(content="junk again" if repair else next(first))

    items = [JudgeItem(QUESTION, AnswerRecord(question_id="q1", answer=key), CONTEXT) for key in ("split", "sure")]
    with OpenAIServer(responder) as server:
        model = build_openai_chat(JudgeConfig(model="j", base_url=server.base_url, max_retries=0))
        split_verdict, sure = LLMJudge(model, JUDGE, CallLimits(1), votes=5).judge(items)
    assert len(server.calls) == 6 + 5  # the malformed vote's repair is a call too
    assert split_verdict.correct and split_verdict.votes == 5 and split_verdict.flaky
    assert split_verdict.agreement == pytest.approx(3 / 4) and split_verdict.score_spread == pytest.approx(0.8)
    assert split_verdict.correctness == pytest.approx((0.9 + 0.2 + 0.8 + 1.0) / 4)
    assert not sure.flaky and sure.agreement == 1.0 and sure.score_spread == 0.0


def test_each_callers_limits_hold_even_on_a_shared_endpoint() -> None:
    """The judge and the reasoner may share an endpoint with different limits: neither inherits the other's."""
    import asyncio

    from reasonloop.reasoning.llm_calls import CallResult, endpoint_for, run_all

    state = {"now": 0, "peak": 0}

    async def slow_call(model: object, messages: object, *asked: object) -> CallResult:
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        await asyncio.sleep(0.02)
        state["now"] -= 1
        return CallResult("", 0, 0, 0.02)

    def peak_in_flight(limits: CallLimits) -> int:
        state.update(now=0, peak=0)
        model = FakeListChatModel(responses=["x"])
        endpoint = endpoint_for(model, limits)
        with patch("reasonloop.reasoning.llm_calls.call_chat", slow_call):
            run_all([lambda: endpoint.call(model, [])] * 8)
        return state["peak"]

    assert peak_in_flight(CallLimits(1)) == 1
    assert peak_in_flight(CallLimits(4)) == 4
    assert peak_in_flight(CallLimits(1)) == 1
