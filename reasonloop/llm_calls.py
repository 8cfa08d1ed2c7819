"""Calling chat models: bounded async fan-out, per-call timing and token usage, JSON output parsing."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage

T = TypeVar("T")
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.S)


@dataclass(frozen=True)
class CallResult:
    text: str
    tokens_in: int
    tokens_out: int
    latency_s: float


async def call_chat(model: BaseChatModel, messages: Sequence[BaseMessage]) -> CallResult:
    """One chat call with its wall time and token usage (0 when the endpoint reports none)."""
    start = time.perf_counter()
    reply = await model.ainvoke(list(messages))
    latency = time.perf_counter() - start
    usage = reply.usage_metadata if isinstance(reply, AIMessage) and reply.usage_metadata else {}
    return CallResult(text=str(reply.content), tokens_in=int(usage.get("input_tokens", 0)),
                      tokens_out=int(usage.get("output_tokens", 0)), latency_s=latency)


_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _shared_loop() -> asyncio.AbstractEventLoop:
    """One event loop per process, on a daemon thread. Async HTTP clients (httpx pools inside ChatOpenAI)
    are bound to the loop that first used them, so a fresh `asyncio.run` per task would break them."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="reasonloop-async", daemon=True).start()
        return _loop


def run_bounded(jobs: Sequence[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Run async jobs with at most `limit` in flight; results in input order. Jobs handle their own errors.
    Safe to call from many threads at once (each call waits for its own jobs on the shared loop)."""

    async def main() -> list[T]:
        gate = asyncio.Semaphore(limit)

        async def one(job: Callable[[], Awaitable[T]]) -> T:
            async with gate:
                return await job()

        return await asyncio.gather(*(one(job) for job in jobs))

    return asyncio.run_coroutine_threadsafe(main(), _shared_loop()).result()


def extract_json(text: str) -> dict[str, Any]:
    """The JSON object in a model reply, tolerating code fences and prose around it."""
    body = _FENCE.sub("", text.strip())
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("no JSON object in the reply")
    value = json.loads(body[start:end + 1])
    if not isinstance(value, dict):
        raise ValueError("the reply's JSON is not an object")
    return value
