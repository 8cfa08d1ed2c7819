"""Calling chat models: bounded async fan-out, per-call timing and token usage, JSON output parsing."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage

from reasonloop.settings import CallLimits

T = TypeVar("T")


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
    return CallResult(text=reply.text, tokens_in=int(usage.get("input_tokens", 0)),
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


class Pacer:
    """Spaces call starts evenly at `requests_per_minute` (no bursts, so a batch that starts all at once does not
    trip a provider's per-minute quota; the client's own retries are not paced). Used only on the shared loop's
    thread: no lock needed."""

    def __init__(self, requests_per_minute: float) -> None:
        self.interval = 60.0 / requests_per_minute
        self._next = 0.0

    async def wait(self) -> None:
        now = asyncio.get_running_loop().time()
        slot = max(now, self._next)
        self._next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


_gates: dict[str, asyncio.Semaphore] = {}
_pacers: dict[str, Pacer] = {}


def endpoint_of(model: BaseChatModel) -> str:
    """Which endpoint a model calls: the key its concurrency gate and pacer are shared under."""
    base = getattr(model, "openai_api_base", None) or ""
    return f"{model._llm_type}:{base}:{getattr(model, 'model_name', '')}"


def run_bounded(jobs: Sequence[Callable[[], Awaitable[T]]], limits: CallLimits, endpoint: str) -> list[T]:
    """Run async jobs within `limits` per `endpoint` across the whole process (every batch task shares the gate
    and the pacer); results in input order. Jobs handle their own errors. Safe to call from many threads."""

    key = f"{endpoint}|{limits}"  # callers with different limits on one endpoint never inherit each other's

    async def main() -> list[T]:
        gate = _gates.setdefault(key, asyncio.Semaphore(limits.max_concurrency))  # only on the loop's thread
        pacer = _pacers.setdefault(key, Pacer(limits.requests_per_minute)) if limits.requests_per_minute else None

        async def one(job: Callable[[], Awaitable[T]]) -> T:
            async with gate:
                if pacer is not None:
                    await pacer.wait()
                return await job()

        return await asyncio.gather(*(one(job) for job in jobs))

    return run_coroutine(main())


def run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the process's shared event loop (where the async HTTP clients live) and wait."""
    future = asyncio.run_coroutine_threadsafe(coroutine, _shared_loop())
    try:
        return future.result()
    finally:
        future.cancel()  # no-op when done; stops the work when the caller is interrupted


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
