"""How one chat call reaches its model, on public interfaces only.

- ChatOpenAI (every OpenAI-compatible endpoint): the request is built from the model's public settings and sent with
  the OpenAI client ChatOpenAI itself holds (`root_async_client`, its documented `post`, the reply read as a dict),
  messages converted by LangChain's `convert_to_openai_messages`, the schema as `response_format` (json_schema) or a
  forced tool from `convert_to_openai_tool`. This is the hot path: no Runnable layer, callback manager or run tree
  per call (our step traces record what callbacks would), and no private method a LangChain release may remove.
- The offline extractive reasoner: its own `respond` (CPU-bound and deterministic; it reads the prompt, never a
  schema).
- Any other LangChain chat model (one a user plugs in): its public `ainvoke`, or
  `with_structured_output(..., include_raw=True)` when a schema is asked for.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, convert_to_openai_messages
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel

from reasonloop.reasoning.extractive import ExtractiveChatModel
from reasonloop.reasoning.structured import Method, reply_text, schema_spec, structured_model

IDENTITY_FIELDS = ("model_name", "temperature", "max_tokens", "top_p", "openai_api_base", "max_sentences")


@dataclass(frozen=True)
class Reply:
    text: str
    tokens_in: int = 0
    tokens_out: int = 0


def model_identity(model: BaseChatModel) -> dict[str, Any]:
    """What makes a model's replies what they are, from public fields: its class, name, sampling settings,
    endpoint, and (the offline reasoner) its encoder's weights."""
    identity: dict[str, Any] = {"class": type(model).__name__}
    identity |= {name: value for name in IDENTITY_FIELDS if (value := getattr(model, name, None)) is not None}
    if (sha := getattr(getattr(model, "embedder", None), "weights_sha256", None)) is not None:
        identity["encoder_sha256"] = sha
    return identity


def is_openai(model: BaseChatModel) -> bool:
    from langchain_openai import ChatOpenAI

    return isinstance(model, ChatOpenAI)


async def ask_model(model: BaseChatModel, messages: Sequence[BaseMessage], schema: type[BaseModel] | None,
                    method: Method) -> Reply:
    """The model's reply to `messages`, the schema asked for by `method` (prompt: not at all)."""
    shaped = schema if method != "prompt" else None
    if is_openai(model):
        return await _openai(model, messages, shaped, method)
    if isinstance(model, ExtractiveChatModel):  # ours, CPU-bound and deterministic: inline, no Runnable layer
        raw = model.respond(list(messages))
    elif shaped is not None:
        raw = (await structured_model(model, shaped, method).ainvoke(list(messages)))["raw"]
    else:
        raw = await model.ainvoke(list(messages))
    usage = raw.usage_metadata if isinstance(raw, AIMessage) and raw.usage_metadata else {}
    text = reply_text(raw, method) if isinstance(raw, AIMessage) else str(raw.content)
    return Reply(text, int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0)))


def request_of(model: Any, messages: Sequence[BaseMessage], schema: type[BaseModel] | None,
               method: Method) -> dict[str, Any]:
    """The chat-completions request ChatOpenAI would send for these messages, from its public settings."""
    payload: dict[str, Any] = {"model": model.model_name, "messages": convert_to_openai_messages(list(messages)),
                               **(model.model_kwargs or {})}
    for name, key in (("temperature", "temperature"), ("max_tokens", "max_completion_tokens"), ("top_p", "top_p"),
                      ("stop", "stop"), ("seed", "seed")):
        if (value := getattr(model, name, None)) is not None:
            payload[key] = value
    if schema is not None and method == "json_schema":
        spec = schema_spec(schema)
        payload["response_format"] = {"type": "json_schema", "json_schema": {
            "name": spec["title"], "description": spec["description"], "schema": spec}}
    elif schema is not None and method == "function_calling":
        tool = convert_to_openai_tool(schema_spec(schema))
        payload |= {"tools": [tool], "parallel_tool_calls": False,
                    "tool_choice": {"type": "function", "function": {"name": tool["function"]["name"]}}}
    return payload


async def _openai(model: Any, messages: Sequence[BaseMessage], schema: type[BaseModel] | None,
                  method: Method) -> Reply:
    # the OpenAI client's documented `post` (its auth, timeout, headers and error types) with the reply as a dict:
    # `chat.completions.create` transforms every message and builds a pydantic model of the reply, ~1 ms a call that
    # keeps concurrency 8 off the ideal (docs/benchmarks.md)
    completion = await model.root_async_client.post("/chat/completions", cast_to=dict,
                                                    body=request_of(model, messages, schema, method))
    try:
        message = completion["choices"][0]["message"]
    except (KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"the endpoint's reply has no choices[0].message: {str(completion)[:200]}; check that "
                         "llm.base_url serves OpenAI chat completions") from exc
    text = message.get("content") or ""
    if method == "function_calling" and message.get("tool_calls"):  # the tool asked for: its arguments are the reply
        text = message["tool_calls"][0]["function"]["arguments"]
        text = text if isinstance(text, str) else json.dumps(text)
    usage = completion.get("usage") or {}
    return Reply(text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
