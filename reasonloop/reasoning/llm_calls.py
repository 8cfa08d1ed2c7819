"""Calling chat models: per-endpoint limits (concurrency, requests and tokens per minute), retries of transient
failures, per-call timing and token usage, and the reply's schema asked for where the endpoint takes it
(`structured.py`).

Retries are ours, not the HTTP client's (its own are off): one budget (`max_retries`) covers every transient
failure, including the ones the OpenAI client would not retry (a 200 whose body is not JSON), a 429's
`Retry-After` is honoured, and a call waiting to retry gives up its concurrency slot."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from pydantic import BaseModel

from reasonloop.reasoning.chat_api import ask_model
from reasonloop.reasoning.config import CallLimits
from reasonloop.reasoning.structured import Method, rejected_shape

T = TypeVar("T")
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallResult:
    text: str
    tokens_in: int
    tokens_out: int
    latency_s: float
    started_ns: int = 0  # wall clock when the request left (after any wait for the endpoint's limits)
    attempts: int = 1  # requests made for this call (1 + retries)


class CallError(Exception):
    """A model call that failed (after its retries), with when it started, how long it took and how often it was
    tried."""

    def __init__(self, cause: Exception, started_ns: int, latency_s: float, attempts: int = 1) -> None:
        tried = f" (after {attempts} attempts)" if attempts > 1 else ""
        super().__init__(f"{type(cause).__name__}: {cause}{tried}")
        self.cause, self.started_ns, self.latency_s, self.attempts = cause, started_ns, latency_s, attempts


class ShapeRefused(CallError):
    """The endpoint (or the model class) refused to be asked for a schema: the call is made again in prompt mode."""


BACKOFF_BASE_S = 0.5  # first retry after ~0.5 s, doubling, jittered, capped
BACKOFF_MAX_S = 8.0
RETRY_AFTER_MAX_S = 60.0  # a server asking for longer is not waited for longer


def retry_delay(exc: Exception, attempt: int, rng: random.Random | None = None) -> float | None:
    """Seconds to wait before retrying after `attempt` failed tries, or None when a retry cannot help (a bad
    request, a refused key, a missing model). Transient: connection errors and timeouts, 408, 409, 429 and 5xx, and
    replies that could not be read (a truncated or non-JSON body)."""
    import openai

    cause = exc.cause if isinstance(exc, CallError) else exc
    if isinstance(cause, openai.APIStatusError):
        status = cause.status_code
        if status == 429 and (told := _retry_after(cause)) is not None:
            return told
        if status not in (408, 409, 429) and status < 500:
            return None
    elif not isinstance(cause, openai.APIConnectionError | openai.APIResponseValidationError | json.JSONDecodeError):
        return None
    backoff = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (attempt - 1))
    return backoff * (1 - 0.25 * (rng or random).random())


def _retry_after(error: Any) -> float | None:
    """The server's `retry-after-ms` or `Retry-After` (seconds or an HTTP date), capped."""
    headers = error.response.headers
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return min(RETRY_AFTER_MAX_S, max(0.0, float(ms) / 1000))
        if (value := headers.get("retry-after")) is not None:
            try:
                seconds = float(value)
            except ValueError:
                when = email.utils.parsedate_to_datetime(value)
                seconds = when.timestamp() - time.time()
            return min(RETRY_AFTER_MAX_S, max(0.0, seconds))
    except (TypeError, ValueError):
        return None
    return None


def describe(exc: Exception) -> str:
    """`Type: message` of the error behind a failed call (not of its CallError wrapper)."""
    return str(exc) if isinstance(exc, CallError) else f"{type(exc).__name__}: {exc}"


def approx_tokens(text: str) -> int:
    """Tokens at ~4 characters each: what providers' quotas and our budgets can count without a tokenizer."""
    return len(text) // 4


async def call_chat(model: BaseChatModel, messages: Sequence[BaseMessage], schema: type[BaseModel] | None = None,
                    method: Method = "prompt") -> CallResult:
    """One chat call (chat_api.py: public interfaces only) with its wall time and token usage (0 when the endpoint
    reports none); with a schema and a method other than `prompt`, the schema is asked for."""
    started_ns, start = time.time_ns(), time.perf_counter()
    try:
        reply = await ask_model(model, messages, schema, method)
    except Exception as exc:  # noqa: BLE001 - re-raised with its timing, the caller records it
        raise CallError(exc, started_ns, time.perf_counter() - start) from exc
    return CallResult(text=reply.text, tokens_in=reply.tokens_in, tokens_out=reply.tokens_out,
                      latency_s=time.perf_counter() - start, started_ns=started_ns)


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
    """Spaces reservations evenly at `per_minute` units (call starts, or tokens): no bursts, so a batch that starts
    all at once does not trip a provider's per-minute quota. A reservation that turns out too large is refunded
    (later calls may start sooner); one too small is charged. Used only on the shared loop's thread: no lock."""

    def __init__(self, per_minute: float) -> None:
        self.interval = 60.0 / per_minute
        self._next = 0.0

    async def wait(self, units: float = 1.0) -> None:
        now = asyncio.get_running_loop().time()
        slot = max(now, self._next)
        self._next = slot + units * self.interval
        if slot > now:
            await asyncio.sleep(slot - now)

    def settle(self, reserved: float, used: float) -> None:
        now = asyncio.get_running_loop().time()
        self._next = max(now, self._next + (used - reserved) * self.interval)


def estimate_tokens(model: BaseChatModel, messages: Sequence[BaseMessage]) -> int:
    """What a call may count against a tokens-per-minute quota before it is made: the prompt at ~4 characters per
    token plus the completion cap (providers count `max_tokens` up front too)."""
    prompt = sum(approx_tokens(str(m.content)) for m in messages)
    return prompt + int(getattr(model, "max_tokens", None) or 0)


class Endpoint:
    """One endpoint under its limits: calls in flight (a semaphore), call starts per minute and tokens per minute
    (pacers). Every model call of every strategy and judge goes through `call`, so a multi-step strategy holds a
    slot only while one of its calls is in flight."""

    def __init__(self, limits: CallLimits) -> None:
        self.gate = asyncio.Semaphore(limits.max_concurrency)
        self.requests = Pacer(limits.requests_per_minute) if limits.requests_per_minute else None
        self.tokens = Pacer(limits.tokens_per_minute) if limits.tokens_per_minute else None
        self.max_retries = limits.max_retries
        self.refused: str | None = None  # why the endpoint refused to be asked for a schema (then: prompt mode)

    async def call(self, model: BaseChatModel, messages: Sequence[BaseMessage], schema: type[BaseModel] | None = None,
                   method: Method = "prompt") -> CallResult:
        """The call, retried on transient failures up to `max_retries` times; raises CallError with the last
        failure (and the first attempt's start, the total time and the attempts) when none succeeded. Asked for
        `schema` by `method` until the endpoint refuses that once: the call is then made again in prompt mode, and
        so is every later one."""
        first_ns, start, attempt, retries = 0, time.perf_counter(), 0, 0
        while True:
            attempt += 1
            try:
                result = await self._attempt(model, messages, schema, method if schema is not None else "prompt")
            except ShapeRefused as exc:  # not a retry: the same call, asked in prompt mode
                first_ns = first_ns or exc.started_ns
                continue
            except CallError as exc:
                first_ns = first_ns or exc.started_ns
                retries += 1
                delay = retry_delay(exc, retries) if retries <= self.max_retries else None
                if delay is None:
                    raise CallError(exc.cause, first_ns, time.perf_counter() - start, attempt) from exc.cause
                await asyncio.sleep(delay)  # outside the gate: a waiting retry holds no slot
                continue
            first_ns = first_ns or result.started_ns
            return CallResult(result.text, result.tokens_in, result.tokens_out, time.perf_counter() - start
                              if attempt > 1 else result.latency_s, first_ns, attempt)

    async def _attempt(self, model: BaseChatModel, messages: Sequence[BaseMessage], schema: type[BaseModel] | None,
                       method: Method) -> CallResult:
        async with self.gate:
            if self.refused is not None:  # refused while this call waited for its slot
                method = "prompt"
            if self.requests is not None:
                await self.requests.wait()
            reserved = estimate_tokens(model, messages) if self.tokens is not None else 0
            if self.tokens is not None:
                await self.tokens.wait(reserved)
            try:
                result = await call_chat(model, messages, schema, method)  # a failed call keeps its reservation
            except CallError as exc:
                if method == "prompt" or not rejected_shape(exc.cause):
                    raise
                if self.refused is None:  # set before the slot is given back: no later call asks that way
                    self.refused = f"{method} refused: {describe(exc)}"[:300]
                    logger.warning("the endpoint refused llm.structured_output=%s (%s): asking in prompt mode",
                                   method, describe(exc)[:200])
                raise ShapeRefused(exc.cause, exc.started_ns, exc.latency_s) from exc.cause
            if self.tokens is not None and result.tokens_in + result.tokens_out:
                self.tokens.settle(reserved, result.tokens_in + result.tokens_out)
            return result


_endpoints: dict[str, Endpoint] = {}
_endpoints_lock = threading.Lock()


def endpoint_of(model: BaseChatModel) -> str:
    """Which endpoint a model calls: the key its limits are shared under."""
    base = getattr(model, "openai_api_base", None) or ""
    return f"{type(model).__name__}:{base}:{getattr(model, 'model_name', '')}"


def endpoint_for(model: BaseChatModel, limits: CallLimits) -> Endpoint:
    """The process-wide limits of the model's endpoint (every batch task shares them); callers with different
    limits on one endpoint never inherit each other's."""
    key = f"{endpoint_of(model)}|{limits}"
    with _endpoints_lock:
        return _endpoints.setdefault(key, Endpoint(limits))


def refusal(model: BaseChatModel) -> str | None:
    """Why the model's endpoint refused to be asked for a schema in this process (then it is asked in prompt mode)."""
    prefix = f"{endpoint_of(model)}|"
    with _endpoints_lock:
        return next((e.refused for key, e in _endpoints.items() if key.startswith(prefix) and e.refused), None)


def run_all(jobs: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run async jobs concurrently on the shared loop, results in input order. Jobs handle their own errors and
    take their limits from `Endpoint.call`. Safe to call from many threads."""

    async def main() -> list[T]:
        return await asyncio.gather(*(job() for job in jobs))

    return run_coroutine(main())


def run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the process's shared event loop (where the async HTTP clients live) and wait."""
    future = asyncio.run_coroutine_threadsafe(coroutine, _shared_loop())
    try:
        return future.result()
    finally:
        future.cancel()  # no-op when done; stops the work when the caller is interrupted


async def on_shared_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Await, from another event loop (the served endpoint's), a coroutine run on the shared loop where the endpoints'
    limits and HTTP clients live: batch and served calls share one pool and one set of limits."""
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, _shared_loop()))
