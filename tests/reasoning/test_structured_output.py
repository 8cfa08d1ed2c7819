"""Real models' replies against a scripted OpenAI-compatible server: the answer schema asked for by
response_format or a forced tool call, a reply of another shape asked for once more and then kept as plain text, and
an endpoint that refuses response_format asked in prompt mode."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from typing import Any

import pytest

from reasonloop.providers import build_openai_chat
from reasonloop.reasoning.answering import answer_questions
from reasonloop.reasoning.config import CallLimits, LLMConfig
from reasonloop.reasoning.llm_calls import refusal
from reasonloop.reasoning.structured import plain_answer
from reasonloop.schemas import AnswerRecord

from ..conftest import make_reasoner
from ..support.openai_server import OpenAIServer, Reply
from .test_reasoning import CONTEXT, QUESTION, _cot_reply

GOOD = _cot_reply("Denver Broncos", "sb::0::aa")


def ask(server: OpenAIServer, method: str, n: int = 1) -> tuple[list[AnswerRecord], Any]:
    """`n` questions through a model on `server` (a fresh endpoint: a port reused by a later server keeps no state)."""
    name = f"m-{uuid.uuid4().hex[:8]}"
    model = build_openai_chat(LLMConfig(provider="openai", model=name, base_url=server.base_url, max_retries=0))
    reasoner = replace(make_reasoner(model, strategy="chain_of_thought"), structured_output=method)
    questions = [QUESTION.model_copy(update={"id": f"q{i}"}) for i in range(n)]
    return answer_questions(questions, [CONTEXT] * n, reasoner, CallLimits(4)), model


def tool_call(arguments: str, request: dict[str, Any]) -> Reply:
    call = {"id": "call_1", "type": "function", "function": {"name": "ModelAnswer", "arguments": arguments}}
    return Reply(body=json.dumps({
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": request.get("model", "m"),
        "choices": [{"index": 0, "finish_reason": "tool_calls",
                     "message": {"role": "assistant", "content": None, "tool_calls": [call]}}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}))


def test_json_schema_mode_sends_the_answer_schema_as_response_format() -> None:
    with OpenAIServer(lambda r: Reply(content=GOOD)) as server:
        [record], _ = ask(server, "json_schema")
    sent = server.calls[0]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "ModelAnswer"
    assert sent["json_schema"]["schema"]["required"] == ["answer"] and "tools" not in server.calls[0]
    assert record.answer == "Denver Broncos" and record.schema_valid and not record.parse_fallback


def test_function_calling_mode_forces_the_tool_and_reads_its_arguments() -> None:
    with OpenAIServer(lambda r: tool_call(GOOD, r)) as server:
        [record], _ = ask(server, "function_calling")
    call = server.calls[0]
    assert call["tool_choice"]["function"]["name"] == "ModelAnswer" and "response_format" not in call
    assert [t["function"]["name"] for t in call["tools"]] == ["ModelAnswer"]
    assert record.answer == "Denver Broncos" and record.citations == ["sb::0::aa"] and record.schema_valid


def test_prompt_mode_asks_through_the_prompt_only() -> None:
    with OpenAIServer(lambda r: Reply(content=GOOD)) as server:
        [record], _ = ask(server, "prompt")
    assert not {"response_format", "tools", "tool_choice"} & set(server.calls[0])
    assert record.answer == "Denver Broncos"


WRONG_SHAPE = json.dumps({"response": "Denver Broncos", "score": 0.9})
FENCED = f"Here you go:\n```json\n{GOOD}\n```\nAnything else?"


@pytest.mark.parametrize(("replies", "answer", "fallback", "valid"), [
    ([WRONG_SHAPE, WRONG_SHAPE], "Denver Broncos", True, False),  # valid JSON of another shape, twice
    (["The Denver Broncos won.", "The Denver Broncos won."], "The Denver Broncos won.", True, False),  # prose
    ([FENCED], "Denver Broncos", False, True),  # fenced JSON inside prose: read as it is, no second ask
    ([WRONG_SHAPE, GOOD], "Denver Broncos", False, False),  # the repair turn fixed it
])
def test_a_reply_of_another_shape_is_asked_again_then_kept_as_plain_text(replies: list[str], answer: str,
                                                                        fallback: bool, valid: bool) -> None:
    queue = iter(replies)
    with OpenAIServer(lambda r: Reply(content=next(queue))) as server:
        [record], _ = ask(server, "json_schema")
    assert len(server.calls) == len(replies)
    assert record.error is None and record.answer == answer
    assert record.parse_fallback is fallback and record.schema_valid is valid
    if len(replies) == 2:
        turn = server.calls[1]["messages"]
        assert turn[-2] == {"role": "assistant", "content": replies[0]}
        assert turn[-1]["role"] == "user" and "reply did not match ModelAnswer" in turn[-1]["content"]
        assert '"answer" (required)' in turn[-1]["content"]
        assert [s.name for s in record.steps] == ["answer", "answer:repair"]


@pytest.mark.parametrize(("reply", "cause"), [
    ("", "reply did not match ModelAnswer: no JSON object in the reply"),
    (json.dumps({"score": 3, "ok": True}), "reply did not match ModelAnswer: missing field 'answer'"),
])
def test_only_empty_or_unusable_replies_fail_the_question(reply: str, cause: str) -> None:
    with OpenAIServer(lambda r: Reply(content=reply)) as server:
        [record], _ = ask(server, "json_schema")
    assert len(server.calls) == 2 and record.error == cause and not record.parse_fallback


def test_an_endpoint_that_refuses_response_format_is_asked_in_prompt_mode() -> None:
    refused = json.dumps({"error": {"message": "'response_format' is not supported by this server",
                                    "type": "invalid_request_error"}})

    def responder(request: dict[str, Any]) -> Reply:
        return Reply(status=400, body=refused) if "response_format" in request else Reply(content=GOOD)

    with OpenAIServer(responder) as server:
        records, model = ask(server, "json_schema", n=12)
    assert all(r.error is None and r.answer == "Denver Broncos" for r in records)
    structured = [i for i, call in enumerate(server.calls) if "response_format" in call]
    assert 1 <= len(structured) <= 4  # at most the calls holding a slot when the refusal came back: then prompt only
    assert len(server.calls) == 12 + len(structured)  # each refused call made again, not failed
    assert "Error code: 400" in (refusal(model) or "")


def test_plain_answer_keeps_what_a_reply_says_and_nothing_unusable() -> None:
    assert plain_answer("```\nParis\n```") == "Paris"
    assert plain_answer(json.dumps({"final_answer": "Paris", "notes": "x"})) == "Paris"
    assert plain_answer(json.dumps({"city": "Paris", "confidence": 1})) == "Paris"  # the one string it holds
    assert plain_answer(json.dumps({"a": "x", "b": "y"})) is None and plain_answer("  ") is None
