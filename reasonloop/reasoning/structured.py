"""The shape of a model's reply: asking for it, reading it, and what to keep when a reply is not it.

- Asking: with `llm.structured_output` json_schema or function_calling, the step's output schema goes to the
  endpoint as `response_format` or a forced tool call (constrained decoding on vLLM and llama.cpp's server, JSON
  mode on OpenAI; chat_api.py sends it, LangChain's `with_structured_output` for models other than ChatOpenAI); the
  prompt's own JSON instructions stay as they are, so `prompt` (the schema in the
  prompt only) works with any endpoint. An endpoint that refuses the request shape (400/422, or a model class
  without the feature) is asked in prompt mode from then on.
- Reading: the reply's first JSON object validated against the schema; what is wrong is said in a line a person can
  count ("reply did not match ModelAnswer: missing field 'answer'").
- Keeping: a reply that is not the schema even after one repair turn is kept as plain text when it holds one
  (`plain_answer`); only empty or unusable replies fail the question.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any, Literal, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import Runnable
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
Method = Literal["json_schema", "function_calling", "prompt"]
ANSWER_KEYS = ("answer", "final_answer", "response", "result", "output", "text", "content")
FENCE = re.compile(r"^```[a-zA-Z]*\n?|\n?```$")
PLAIN_MAX_CHARS = 4000


def resolve_method(configured: str, provider: str) -> Method:
    """`auto`: json_schema for OpenAI-compatible endpoints, the prompt for the offline reasoner (not an LLM)."""
    if configured == "auto":
        return "json_schema" if provider == "openai" else "prompt"
    return configured  # type: ignore[return-value]


_runnables: dict[tuple[int, str, str], tuple[BaseChatModel, Runnable[Any, Any]]] = {}


def structured_model(model: BaseChatModel, schema: type[BaseModel], method: Method) -> Runnable[Any, Any]:
    """The model asked for `schema` through LangChain's public interface, the raw message kept (we validate it
    ourselves, so one reader handles every mode). Built once per model, schema and method."""
    key = (id(model), schema.__name__, method)
    if (cached := _runnables.get(key)) is None or cached[0] is not model:
        cached = _runnables[key] = (model, model.with_structured_output(schema_spec(schema), method=method,
                                                                        include_raw=True))
    return cached[1]


@cache
def schema_spec(schema: type[BaseModel]) -> dict[str, Any]:
    """The schema as the JSON schema an endpoint is given: titled and described (a plain dict, so no client-side
    validation runs before ours)."""
    return {**schema.model_json_schema(), "title": schema.__name__,
            "description": " ".join((schema.__doc__ or schema.__name__).split())}


def reply_text(message: AIMessage, method: Method) -> str:
    """The reply as text: the arguments of the tool call that was asked for (function_calling) as JSON, else the
    content (an unsolicited tool call is not read as the answer)."""
    if method == "function_calling" and message.tool_calls:
        return json.dumps(message.tool_calls[0]["args"], ensure_ascii=False)
    return message.text


def rejected_shape(exc: Exception) -> bool:
    """Did the endpoint (or the model class) refuse to be asked for a schema, rather than fail the call?"""
    import openai

    return isinstance(exc, NotImplementedError | openai.BadRequestError | openai.UnprocessableEntityError)


def parse_reply(text: str, schema: type[M]) -> M | str:
    """The reply's first JSON object validated as `schema`, or what is wrong with it, in one countable line."""
    try:
        return schema.model_validate(extract_json(text))
    except ValidationError as exc:
        return f"reply did not match {schema.__name__}: " + "; ".join(_problem(e) for e in exc.errors()[:3])
    except ValueError as exc:
        return f"reply did not match {schema.__name__}: {exc}"


def _problem(error: Any) -> str:
    where = ".".join(str(p) for p in error["loc"]) or "reply"
    return f"missing field '{where}'" if error["type"] == "missing" else f"field '{where}': {error['msg']}"


def extract_json(text: str) -> dict[str, Any]:
    """The first JSON object in a model reply, tolerating code fences and prose before or after it."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start >= 0:
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            return value
        start = text.find("{", start + 1)
    raise ValueError("no JSON object in the reply")


def plain_answer(text: str) -> str | None:
    """What a reply that is not the schema says, as plain text: prose as written (fences dropped), or the answer-like
    field of a JSON object of another shape. None: nothing usable (empty, or JSON without one string to keep)."""
    try:
        value = extract_json(text)
    except ValueError:
        prose = FENCE.sub("", text.strip()).strip()
        return prose[:PLAIN_MAX_CHARS] or None
    strings = {k: v.strip() for k, v in value.items() if isinstance(v, str) and v.strip()}
    for key in ANSWER_KEYS:
        if key in strings:
            return strings[key][:PLAIN_MAX_CHARS]
    return next(iter(strings.values()))[:PLAIN_MAX_CHARS] if len(strings) == 1 else None


def schema_fields(schema: type[BaseModel]) -> str:
    """The schema's fields, required ones marked, for the repair turn."""
    return ", ".join(f'"{name}"' + (" (required)" if field.is_required() else "")
                     for name, field in schema.model_fields.items())


def repair_turn(reply: str, problem: str, schema: type[BaseModel]) -> list[BaseMessage]:
    """The conversation's continuation that asks for a reply again: the reply as it came, then what was wrong
    with it and the fields the object has."""
    return [AIMessage(reply), HumanMessage(f"Your reply was not the JSON object the instructions ask for ({problem}). "
                                           f"Reply again with only that object, with the fields "
                                           f"{schema_fields(schema)}.")]
