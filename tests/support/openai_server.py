"""An OpenAI-compatible chat server for tests, on 127.0.0.1 with a random port.

Replies are scripted by a `responder(request_json) -> Reply`; every request is kept in `calls` so tests
can count what reached the server. Headers and body go out in one write with TCP_NODELAY, so no call
stalls on delayed ACKs.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, b'{"error": {"message": "not found"}}', {})
                    return
                reply = server.responder(request)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
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


def user_text(request: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content", "")) for m in request.get("messages", []) if m.get("role") == "user")


def system_text(request: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content", "")) for m in request.get("messages", []) if m.get("role") == "system")


def serve_fixed(content: str, delay_s: float) -> None:
    """Serve one fixed reply after a fixed delay until killed; prints the base URL (used by benchmarks, which run
    the server in its own process so it does not share the client's GIL)."""
    with OpenAIServer(lambda request: Reply(content=content, delay_s=delay_s)) as server:
        print(server.base_url, flush=True)  # noqa: T201 - the parent reads it
        threading.Event().wait()


if __name__ == "__main__":
    import sys

    serve_fixed(sys.stdin.read(), float(sys.argv[1]))
