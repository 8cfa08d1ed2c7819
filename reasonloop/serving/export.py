"""The exporter: moves what the spool acknowledged into MLflow, in the background, in order. Each answered request
becomes a trace in the live experiment (`<prefix>-live`: a retriever span, a span per model call with its token
usage, tags naming the trace id, arm, index version and prompt versions, the session and user as MLflow's trace
metadata); each piece of feedback becomes an assessment on its trace once the trace is there: a rating as feedback
`user_rating` (up = true), a correction as expectation `expected_response`, both from a HUMAN source."""

from __future__ import annotations

import json
import logging
import threading

from reasonloop.monitoring.tracking import Tracker
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


def log_live_trace(answer: LiveAnswer, experiment_id: str) -> str:
    """The answered request as a trace; returns the MLflow trace id."""
    from mlflow.tracing.constant import TraceMetadataKey

    metadata = {TraceMetadataKey.TRACE_SESSION: answer.session_id or answer.trace_id,
                **({TraceMetadataKey.TRACE_USER: answer.user_id} if answer.user_id else {})}
    return log_answer_trace(answer.question, answer.retrieved, answer.answer, experiment_id, name="ask",
                            tags=trace_tags(answer), metadata=metadata)


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
    """A daemon thread that empties the spool into MLflow every `interval_s`; `drain` waits until it is empty."""

    def __init__(self, spool: Spool, tracker: Tracker, batch: int, interval_s: float, lease_s: float = 120.0) -> None:
        self.spool, self.tracker, self.batch, self.interval_s, self.lease_s = spool, tracker, batch, interval_s, lease_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._experiment_id: str | None = None

    def export_once(self) -> int:
        """One round: pending answers, then the feedback whose trace is in MLflow; returns how many moved."""
        import mlflow

        self.tracker.activate()
        if self._experiment_id is None:
            self._experiment_id = self.tracker.ensure_experiment(LIVE_KIND)
        ids = []
        for trace_id, body, attempt in self.spool.claim_asks(self.batch, self.lease_s):
            written = self.written_trace(trace_id) if attempt > 1 else None  # a dead exporter may have written it
            ids.append((trace_id, written or log_live_trace(LiveAnswer.model_validate_json(body),
                                                            self._experiment_id)))
        if ids:
            mlflow.flush_trace_async_logging()  # written before they are marked: a crash exports them again
        for trace_id, mlflow_id in ids:
            self.spool.ask_exported(trace_id, mlflow_id)
        feedback = self.spool.claim_feedback(self.batch, self.lease_s)
        for feedback_id, mlflow_id, body, attempt in feedback:
            if attempt == 1 or not self.assessed(mlflow_id, feedback_id):
                log_live_feedback(LiveFeedback.model_validate_json(body), mlflow_id, feedback_id)
            self.spool.feedback_exported(feedback_id)
        return len(ids) + len(feedback)

    def written_trace(self, trace_id: str) -> str | None:
        """The MLflow trace an earlier export of this request wrote, if any."""
        import mlflow

        found = mlflow.search_traces(locations=[self._experiment_id], return_type="list", include_spans=False,
                                     filter_string=f"tags.`reasonloop.trace_id` = '{trace_id}'")
        return found[0].info.trace_id if found else None

    def assessed(self, mlflow_trace_id: str, feedback_id: int) -> bool:
        """Whether an earlier export of this feedback reached its trace."""
        import mlflow

        assessments = mlflow.get_trace(mlflow_trace_id).info.assessments
        return any((a.metadata or {}).get(FEEDBACK_ID) == str(feedback_id) for a in assessments)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                moved = self.export_once()
            except Exception as exc:  # noqa: BLE001 - MLflow down: keep the spool, try again next round
                logger.warning("trace export failed, retrying: %s", redact(str(exc)))
                moved = 0
            if not moved:
                self._stop.wait(self.interval_s)

    def start(self) -> None:
        self.tracker.activate()
        self._thread = threading.Thread(target=self._loop, name="reasonloop-export", daemon=True)
        self._thread.start()

    def drain(self, timeout_s: float = 60.0) -> bool:
        """Export until nothing is pending (or `timeout_s`); True when the spool is empty."""
        import time

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.spool.backlog() == (0, 0):
                return True
            if self._thread is None or not self._thread.is_alive():
                self.export_once()
            else:
                time.sleep(0.05)
        return self.spool.backlog() == (0, 0)

    def stop(self, drain_s: float = 30.0) -> None:
        """Export what is pending (up to `drain_s`), then stop: a graceful restart leaves nothing behind (and what
        a killed process leaves, the next one exports)."""
        self.drain(drain_s)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
