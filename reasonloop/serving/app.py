"""The served endpoint (FastAPI): `POST /v1/ask`, `POST /v1/feedback`, `GET /healthz`, `GET /readyz`, `GET /metrics`.

Every answered request is committed to the spool before its response leaves, and exported to MLflow as a trace in
the background; feedback likewise, as an assessment on its trace. A request that is not valid gets a 4xx with a JSON
error naming the field, and nothing is written anywhere."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Receive, Scope, Send

from reasonloop.redact import redact
from reasonloop.serving.config import ServingConfig
from reasonloop.serving.engine import Engine
from reasonloop.serving.export import Exporter
from reasonloop.serving.metrics import ServingMetrics
from reasonloop.serving.models import (
    AskRequest,
    AskResponse,
    ErrorBody,
    FeedbackRequest,
    FeedbackResponse,
    LiveFeedback,
    Problem,
)
from reasonloop.serving.spool import Spool

logger = logging.getLogger(__name__)
BODY_LIMIT_BYTES = 256 * 1024  # far above any valid request; a larger body is refused unread (413)


@dataclass(frozen=True)
class LiveService:
    """Everything the endpoint runs on, built by the factory (`reasonloop.providers.build_live_service`)."""

    engine: Engine
    spool: Spool
    exporter: Exporter
    metrics: ServingMetrics
    config: ServingConfig


def error(status: int, kind: str, message: str, fields: list[Problem] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": ErrorBody(type=kind, message=message,
                                                                          fields=fields or []).model_dump()})


def ask_problems(body: AskRequest, cfg: ServingConfig) -> list[Problem]:
    problems = []
    if len(body.question) > cfg.max_question_chars:
        problems.append(Problem(field="question", problem=f"{len(body.question)} characters, over the limit of "
                                                           f"{cfg.max_question_chars} (serving.max_question_chars)"))
    if len(body.metadata) > cfg.max_metadata_keys:
        problems.append(Problem(field="metadata", problem=f"{len(body.metadata)} entries, over the limit of "
                                                           f"{cfg.max_metadata_keys}"))
    return problems


def feedback_problems(body: FeedbackRequest, cfg: ServingConfig) -> list[Problem]:
    limits = (("corrected_answer", body.corrected_answer, cfg.max_answer_chars),
              ("comment", body.comment, cfg.max_comment_chars))
    return [Problem(field=name, problem=f"{len(text)} characters, over the limit of {limit}")
            for name, text, limit in limits if text is not None and len(text) > limit]


class BodyLimit:
    """Refuses a body over BODY_LIMIT_BYTES unread (a plain ASGI middleware: Starlette's function middleware costs a
    task and a stream per request)."""

    def __init__(self, app: ASGIApp, metrics: ServingMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        length = dict(scope.get("headers") or []).get(b"content-length") if scope["type"] == "http" else None
        if length is not None and (not length.isdigit() or int(length) > BODY_LIMIT_BYTES):
            self.metrics.errors.labels(scope["path"], "too_large").inc()
            await error(413, "too_large", f"the body is over {BODY_LIMIT_BYTES} bytes")(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(service: LiveService) -> FastAPI:
    engine, spool, metrics, cfg = service.engine, service.spool, service.metrics, service.config

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.exporter.start()
        try:
            await asyncio.to_thread(engine.setup)  # load the models before the first request
        except Exception as exc:  # noqa: BLE001 - the endpoint still starts; /readyz says what is wrong
            logger.warning("the serving setup could not be built yet: %s", redact(str(exc)))
        yield
        await asyncio.to_thread(service.exporter.stop)

    app = FastAPI(title="reasonloop", version="1", lifespan=lifespan)

    app.add_middleware(BodyLimit, metrics=metrics)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [Problem(field="(body)", problem=f"not valid JSON ({e.get('ctx', {}).get('error', e['msg'])})")
                  if e["type"] == "json_invalid" else
                  Problem(field=".".join(str(p) for p in e["loc"] if p != "body") or "(body)", problem=e["msg"])
                  for e in exc.errors()]
        metrics.errors.labels(request.url.path, "invalid_request").inc()
        return error(422, "invalid_request", "; ".join(f"{f.field}: {f.problem}" for f in fields), fields)

    @app.post("/v1/ask", response_model=AskResponse, responses={422: {"model": ErrorBody}, 502: {"model": ErrorBody}})
    async def ask(body: AskRequest) -> Any:
        started = time.perf_counter()
        if problems := ask_problems(body, cfg):
            metrics.errors.labels("/v1/ask", "invalid_request").inc()
            return error(422, "invalid_request", "; ".join(f"{p.field}: {p.problem}" for p in problems), problems)
        trace_id = uuid.uuid4().hex
        with service.exporter.busy():
            try:
                answered = await engine.ask(body, trace_id)
            except Exception as exc:  # noqa: BLE001 - the index or the setup failed: nothing was answered or written
                metrics.errors.labels("/v1/ask", "unavailable").inc()
                logger.exception("ask failed")
                return error(503, "unavailable", f"cannot answer now ({type(exc).__name__}: {redact(str(exc))}); "
                                                 "see /readyz")
            await asyncio.to_thread(spool.record_ask, trace_id, answered.received_ns, answered.model_dump_json())
        answer = answered.answer
        status = 502 if answer.error is not None else 200
        metrics.observe("/v1/ask", answered.arm, status, time.perf_counter() - started)
        if answer.error is not None:
            metrics.errors.labels("/v1/ask", "upstream_error").inc()
            return error(502, "upstream_error", f"the model failed (trace {trace_id}): {redact(answer.error)}")
        return Response(AskResponse(  # serialized once, here: FastAPI's response_model path would validate it again
            trace_id=trace_id, answer=answer.answer, citations=answer.citations, confidence=answer.confidence,
            strategy=answer.strategy, route=answer.route, arm=answered.arm, model=answer.model,
            prompt_versions=answered.prompt_versions, index_version=answered.index_version,
            guardrails=answer.guardrails, latency_s=time.perf_counter() - started).model_dump_json(),
            media_type="application/json")

    @app.post("/v1/feedback", response_model=FeedbackResponse,
              responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}})
    async def feedback(body: FeedbackRequest) -> Any:
        if problems := feedback_problems(body, cfg):
            metrics.errors.labels("/v1/feedback", "invalid_request").inc()
            return error(422, "invalid_request", "; ".join(f"{p.field}: {p.problem}" for p in problems), problems)
        if not await asyncio.to_thread(spool.knows, body.trace_id):
            metrics.errors.labels("/v1/feedback", "unknown_trace").inc()
            return error(404, "unknown_trace", f"no answered request has trace id {body.trace_id!r}",
                         [Problem(field="trace_id", problem="unknown")])
        record = LiveFeedback(trace_id=body.trace_id, received_ns=time.time_ns(), rating=body.rating,
                              corrected_answer=body.corrected_answer, comment=body.comment)
        await asyncio.to_thread(spool.record_feedback, body.trace_id, record.received_ns, record.model_dump_json())
        recorded = [*(["rating"] if body.rating else []), *(["correction"] if body.corrected_answer else [])]
        for kind in (f"rating_{body.rating}" if body.rating else None, "correction" if body.corrected_answer else None):
            if kind:
                metrics.feedback.labels(kind).inc()
        return FeedbackResponse(trace_id=body.trace_id, recorded=recorded)  # type: ignore[arg-type]

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        problems = await asyncio.to_thread(engine.problems)
        return JSONResponse(status_code=503 if problems else 200, content={"ready": not problems,
                                                                           "problems": problems})

    @app.get("/metrics")
    async def prometheus() -> Response:
        setup = engine.current
        metrics.canary_share.set(setup.canary.share if setup is not None and setup.canary else 0.0)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app
