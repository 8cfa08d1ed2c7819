"""An OpenAI-compatible chat server for tests, on 127.0.0.1 with a random port.

Replies are scripted by a `responder(request_json) -> Reply`; every request is kept in `calls` and what the
server did with it in `outcomes` ("ok", an HTTP status, or a fault), so tests can count what reached the server.
A reply can also be a fault: a connection reset, a truncated body, or a 200 whose body is not JSON
(`FaultPlan` injects them, with 429s, 5xx and timeouts, at seeded rates). Headers and body go out in one write
with TCP_NODELAY, so no call stalls on delayed ACKs.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Fault = Literal["reset", "truncate", "garbage"]


@dataclass
class Reply:
    """What the server sends: a chat completion with `content`, or an error `status` with a raw body."""

    content: str = ""
    status: int = 200
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    prompt_tokens: int = 11
    completion_tokens: int = 7
    fault: Fault | None = None


Responder = Callable[[dict[str, Any]], Reply]


def completion(content: str, model: str, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


class OpenAIServer:
    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.calls: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.times: list[float] = []  # time.monotonic() at each request's arrival
        self.outcomes: list[str] = []  # per request, in arrival order: "ok", the status code, or the fault
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                head = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
                        "Content-Type: application/json", f"Content-Length: {len(body)}",
                        *(f"{k}: {v}" for k, v in headers.items()), "", ""]
                self.wfile.write("\r\n".join(head).encode() + body)  # one write
                self.wfile.flush()

            def _fault(self, fault: Fault, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                if fault == "garbage":
                    self._send(200, b"<html>502 Bad Gateway</html>", {})
                    return
                if fault == "truncate":  # promises the whole body, sends half, hangs up
                    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                    self.wfile.write(head.encode() + body[:len(body) // 2])
                    self.wfile.flush()
                # reset (and the end of a truncated reply): RST instead of an orderly close
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, json.dumps({"object": "list", "data": [{"id": "test-model"}]}).encode(), {})
                else:
                    self._send(404, b'{"error": {"message": "not found"}}', {})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.times.append(time.monotonic())
                    server.calls.append(request)
                    server.headers.append(dict(self.headers))
                    index = len(server.outcomes)
                    server.outcomes.append("pending")
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, b'{"error": {"message": "not found"}}', {})
                    return
                reply = server.responder(request)
                server.outcomes[index] = reply.fault or ("ok" if reply.status == 200 and reply.body is None
                                                         else str(reply.status))
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.fault is not None:
                    self._fault(reply.fault, completion(reply.content, "m", 1, 1))
                    return
                if reply.body is not None or reply.status != 200:
                    body = reply.body if reply.body is not None else json.dumps(
                        {"error": {"message": f"scripted {reply.status}", "type": "server_error"}})
                    self._send(reply.status, body.encode(), reply.headers)
                    return
                payload = completion(reply.content, request.get("model", "test-model"), reply.prompt_tokens,
                                     reply.completion_tokens)
                self._send(200, json.dumps(payload).encode(), reply.headers)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> OpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@dataclass
class FaultPlan:
    """Seeded faults per (key, attempt): the n-th request for the same key (e.g. a question) meets the same fault
    in every run, whatever order concurrent requests arrive in. `rates` maps a fault to its probability: "429"
    (with Retry-After), "500", "503", "reset", "truncate", "garbage", "timeout" (no reply: the server waits
    `timeout_s`, past the client's timeout, and hangs up) and "slow" (a reply after `slow_s`, within the timeout)."""

    rates: dict[str, float]
    seed: int = 0
    timeout_s: float = 2.0
    slow_s: float = 0.2
    retry_after_ms: int = 50
    attempts: dict[str, int] = field(default_factory=dict)
    log: list[tuple[str, int, str]] = field(default_factory=list)  # (key, attempt, fault or "ok") per request
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def around(self, responder: Responder, key: Callable[[dict[str, Any]], str]) -> Responder:
        """`responder`, with this plan's faults in front of it."""
        def faulty(request: dict[str, Any]) -> Reply:
            name = key(request)
            with self._lock:
                attempt = self.attempts[name] = self.attempts.get(name, 0) + 1
            draw = random.Random(f"{self.seed}:{name}:{attempt}").random()
            chosen = "ok"
            for fault, rate in self.rates.items():
                if draw < rate:
                    chosen = fault
                    break
                draw -= rate
            with self._lock:
                self.log.append((name, attempt, chosen))
            good = responder(request)
            return good if chosen == "ok" else self._reply(chosen, good)
        return faulty

    def _reply(self, fault: str, good: Reply) -> Reply:
        if fault == "429":
            return Reply(status=429, headers={"retry-after-ms": str(self.retry_after_ms), "Retry-After": "0"})
        if fault in ("500", "503"):
            return Reply(status=int(fault))
        if fault == "timeout":  # then hangs up: a client slowed past its timeout must not take a late reply
            return Reply(delay_s=self.timeout_s, fault="reset")
        if fault == "slow":
            return Reply(content=good.content, delay_s=self.slow_s, prompt_tokens=good.prompt_tokens,
                         completion_tokens=good.completion_tokens)
        return Reply(content=good.content, fault=fault)  # type: ignore[arg-type]


def user_text(request: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content", "")) for m in request.get("messages", []) if m.get("role") == "user")


def system_text(request: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content", "")) for m in request.get("messages", []) if m.get("role") == "system")


def serve_fixed(content: str, delay_s: float, fault_rate: float = 0.0) -> None:
    """Serve one fixed reply after a fixed delay until killed, with `fault_rate` of requests meeting a transient
    fault (half 500s, a quarter 429s, a quarter connection resets, seeded per question and attempt); prints the base
    URL (used by benchmarks, which run the server in its own process so it does not share the client's GIL)."""
    def fixed(request: dict[str, Any]) -> Reply:
        return Reply(content=content, delay_s=delay_s)

    plan = FaultPlan({"500": fault_rate / 2, "429": fault_rate / 4, "reset": fault_rate / 4})
    with OpenAIServer(plan.around(fixed, user_text) if fault_rate else fixed) as server:
        print(server.base_url, flush=True)  # noqa: T201 - the parent reads it
        threading.Event().wait()


if __name__ == "__main__":
    import sys

    serve_fixed(sys.stdin.read(), float(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.0)
