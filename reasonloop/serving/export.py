"""The exporter: moves what the spool acknowledged into MLflow, in the background, in order. Each answered request
becomes a trace in the live experiment (`<prefix>-live`: a retriever span, a span per model call with its token
usage, tags naming the trace id, arm, index version and prompt versions, the session and user as MLflow's trace
metadata); each piece of feedback becomes an assessment on its trace once the trace is there: a rating as feedback
`user_rating` (up = true), a correction as expectation `expected_response`, both from a HUMAN source."""

from __future__ import annotations

import functools
import json
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from reasonloop.monitoring.tracking import Tracker, writer_alive
from reasonloop.reasoning.traces import log_answer_trace
from reasonloop.redact import redact
from reasonloop.serving.models import LiveAnswer, LiveFeedback
from reasonloop.serving.spool import Spool

logger = logging.getLogger(__name__)
LIVE_KIND = "live"  # the experiment `<prefix>-live` holds the served endpoint's traces
RATING, CORRECTION = "user_rating", "expected_response"
FEEDBACK_ID = "reasonloop.feedback_id"  # on each assessment: the spool row it came from


def trace_tags(answer: LiveAnswer) -> dict[str, str]:
    return {"reasonloop.trace_id": answer.trace_id, "reasonloop.source": "api", "reasonloop.arm": answer.arm,
            "reasonloop.index_version": answer.index_version, "reasonloop.canary_id": answer.canary_id or "",
            "reasonloop.prompt_versions": json.dumps(answer.prompt_versions, sort_keys=True)}


def log_live_trace(answer: LiveAnswer, experiment_id: str, on_start: Callable[[str], None] | None = None) -> str:
    """The answered request as a trace; returns the MLflow trace id (also to `on_start`, before it is written)."""
    from mlflow.tracing.constant import TraceMetadataKey

    metadata = {TraceMetadataKey.TRACE_SESSION: answer.session_id or answer.trace_id,
                **({TraceMetadataKey.TRACE_USER: answer.user_id} if answer.user_id else {})}
    return log_answer_trace(answer.question, answer.retrieved, answer.answer, experiment_id, name="ask",
                            tags=trace_tags(answer), metadata=metadata, on_start=on_start)


def log_live_feedback(feedback: LiveFeedback, mlflow_trace_id: str, feedback_id: int) -> None:
    import mlflow
    from mlflow.entities import AssessmentSource, AssessmentSourceType

    source = AssessmentSource(source_type=AssessmentSourceType.HUMAN, source_id=feedback.user_id or "api")
    metadata = {FEEDBACK_ID: str(feedback_id), **({"comment": feedback.comment} if feedback.comment else {})}
    if feedback.rating is not None:
        mlflow.log_feedback(trace_id=mlflow_trace_id, name=RATING, value=feedback.rating == "up", source=source,
                            rationale=feedback.comment, metadata=metadata)
    if feedback.corrected_answer is not None:
        mlflow.log_expectation(trace_id=mlflow_trace_id, name=CORRECTION, value=feedback.corrected_answer,
                               source=source, metadata=metadata)


class Exporter:
    """Empties the spool into MLflow every `interval_s`: in a child process at a lower CPU priority (`nice`: MLflow's
    writes cost ~21 ms of CPU per trace to a SQLite store, which must not share the GIL or the cores' time with the
    request path), or with `nice` None in a thread of this process. It gives way while requests are in flight
    (`busy`), until `max_backlog` rows wait: a burst is answered first and exported after. `drain` waits until the
    spool is empty; `stop` exports what is pending first."""

    def __init__(self, spool: Spool, tracker: Tracker, batch: int, interval_s: float, lease_s: float = 120.0,
                 nice: int | None = None, max_backlog: int = 10_000, in_flight: Any = None) -> None:
        self.spool, self.tracker, self.batch, self.interval_s, self.lease_s = spool, tracker, batch, interval_s, lease_s
        self.nice, self.max_backlog = nice, max_backlog
        # requests in flight, shared with a child exporter (which is given its parent's counter)
        self._in_flight: Any = in_flight if in_flight is not None else multiprocessing.get_context("spawn").RawValue(
            "i", 0)
        self._stop: Any = threading.Event()
        self._worker: threading.Thread | BaseProcess | None = None
        self._experiment_id: str | None = None

    def export_once(self) -> int:
        """One round: pending answers, then the feedback whose trace is in MLflow; returns how many moved."""
        import mlflow

        self.tracker.activate()
        if self._experiment_id is None:
            self._experiment_id = self.tracker.ensure_experiment(LIVE_KIND)
        claimed = self.spool.claim_asks(self.batch, self.lease_s)
        earlier = {trace_id: noted for trace_id, _, noted in claimed if noted}  # an earlier export began these
        whole = self.landed(earlier) if earlier else set()
        if cut_short := [noted for trace_id, noted in earlier.items() if trace_id not in whole]:
            # MLflow writes a trace's spans before its tags: a write cut between them left a trace without them
            self.tracker.client().delete_traces(str(self._experiment_id), trace_ids=cut_short)
        ids, landed = {}, set()
        for trace_id, body, _ in claimed:
            ids[trace_id] = earlier[trace_id] if trace_id in whole else log_live_trace(
                LiveAnswer.model_validate_json(body), self._experiment_id,
                on_start=functools.partial(self.spool.note_mlflow_id, trace_id))
        if ids:
            mlflow.flush_trace_async_logging()  # written before they are marked: a crash exports them again
            landed = self.landed(ids)
            for trace_id in landed:
                self.spool.ask_exported(trace_id, ids[trace_id])
            if missed := set(ids) - landed:  # MLflow's trace export logs a failure and drops the trace
                logger.warning("%d of %d traces did not reach MLflow; they are exported again", len(missed), len(ids))
                self.spool.release_asks(sorted(missed))
        feedback = self.spool.claim_feedback(self.batch, self.lease_s)
        for feedback_id, mlflow_id, body, attempt in feedback:
            if attempt == 1 or not self.assessed(mlflow_id, feedback_id):
                log_live_feedback(LiveFeedback.model_validate_json(body), mlflow_id, feedback_id)
            self.spool.feedback_exported(feedback_id)
        return len(landed) + len(feedback)

    def landed(self, ids: dict[str, str]) -> set[str]:
        """The requests (of {request trace id: MLflow trace id}) whose trace is in MLflow whole, tags included."""
        import mlflow

        quoted = ", ".join(f"'{mlflow_id}'" for mlflow_id in ids.values())
        found = mlflow.search_traces(locations=[self._experiment_id], return_type="list", include_spans=False,
                                     filter_string=f"trace.request_id IN ({quoted})", max_results=len(ids))
        return {t.info.tags["reasonloop.trace_id"] for t in found
                if ids.get(t.info.tags.get("reasonloop.trace_id", "")) == t.info.trace_id}

    def assessed(self, mlflow_trace_id: str, feedback_id: int) -> bool:
        """Whether an earlier export of this feedback reached its trace."""
        import mlflow

        assessments = mlflow.get_trace(mlflow_trace_id).info.assessments
        return any((a.metadata or {}).get(FEEDBACK_ID) == str(feedback_id) for a in assessments)

    @contextmanager
    def busy(self) -> Iterator[None]:
        """A request in flight (on the event loop's thread): the exporter gives way to it."""
        self._in_flight.value += 1
        try:
            yield
        finally:
            self._in_flight.value -= 1

    def giving_way(self) -> bool:
        return self._in_flight.value > 0 and sum(self.spool.backlog()) < self.max_backlog

    def serve(self, stopped: Callable[[], bool], wait: Callable[[float], Any]) -> None:
        """Export rounds until `stopped()`; a round given way, idle or failed waits `interval_s`."""
        while not stopped():
            if self.giving_way():
                wait(self.interval_s)
                continue
            try:
                moved = self.export_once()
            except Exception as exc:  # noqa: BLE001 - MLflow down: keep the spool, try again next round
                logger.warning("trace export failed, retrying: %s", redact(str(exc)))
                moved = 0
            if not moved:
                wait(self.interval_s)

    def start(self) -> None:
        """Free what dead exporters had claimed, then export in the background."""
        if freed := self.spool.release_dead(lambda host, pid: writer_alive({"reasonloop.host": host,
                                                                             "reasonloop.pid": pid})):
            logger.warning("an exporter that is gone left %d rows claimed; exporting them now", freed)
        if self.nice is None:
            self.tracker.activate()
            self._worker = threading.Thread(target=self.serve, args=(self._stop.is_set, self._stop.wait),
                                            name="reasonloop-export", daemon=True)
        else:
            context = multiprocessing.get_context("spawn")  # never fork a process that runs threads
            self._stop = context.Event()
            self._worker = context.Process(target=export_in_child, name="reasonloop-export", args=(
                self.spool.path, self.tracker, self.batch, self.interval_s, self.lease_s, self.nice, os.getpid(),
                self._stop, self._in_flight, self.max_backlog))
        self._worker.start()

    def drain(self, timeout_s: float = 60.0) -> bool:
        """Export until nothing is pending (or `timeout_s`); True when the spool is empty."""
        import time

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.spool.backlog() == (0, 0):
                return True
            if self._worker is None or not self._worker.is_alive():
                self.export_once()
            else:
                time.sleep(0.05)
        return self.spool.backlog() == (0, 0)

    def stop(self, drain_s: float = 30.0) -> None:
        """Export what is pending (up to `drain_s`), then stop: a graceful restart leaves nothing behind (and what
        a killed process leaves, the next one exports)."""
        if isinstance(self._worker, threading.Thread):
            self.drain(drain_s)
        self._stop.set()  # a child process drains before it exits
        if self._worker is not None:
            self._worker.join(timeout=drain_s + 5.0)
            if isinstance(self._worker, BaseProcess) and self._worker.is_alive():
                self._worker.terminate()  # what it had not exported stays in the spool for the next start


def export_in_child(path: Path, tracker: Tracker, batch: int, interval_s: float, lease_s: float, nice: int,
                    parent: int, stop: Any, in_flight: Any, max_backlog: int, drain_s: float = 30.0) -> None:
    """The child process's exporter: runs until told to stop (then drains) or until its parent is gone. Ctrl-C and
    SIGTERM reach the whole process group: the parent handles them and tells the child to stop after draining."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.nice(nice)
    if tracker.local:  # one writer: MLflow's ten asynchronous writers contend for SQLite's lock and drop traces
        os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"
    exporter = Exporter(Spool(path), tracker, batch, interval_s, lease_s, max_backlog=max_backlog, in_flight=in_flight)
    exporter.tracker.activate()
    exporter.serve(lambda: stop.is_set() or os.getppid() != parent, stop.wait)
    if stop.is_set():
        exporter.drain(drain_s)
