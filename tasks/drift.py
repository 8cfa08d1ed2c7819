"""Drift tasks over reasonloop/monitoring: read the windows back from MLflow (retried: they are reads), turn them
into per-question values and signals, log the drift run, and raise the alarm (a Prefect event, and the webhook)."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from reasonloop.monitoring import drift_run, drift_signals, drift_windows
from reasonloop.monitoring.config import DriftConfig
from reasonloop.monitoring.drift_stats import SignalResult
from reasonloop.monitoring.drift_windows import DriftWindows
from reasonloop.monitoring.tracking import Tracker
from reasonloop.schemas import FlowReport
from tasks.retry import IO_RETRIES
from tasks.track import writer

read_windows = task(drift_windows.read_windows, name="read-drift-windows", **IO_RETRIES, cache_policy=NO_CACHE)
read_quality_series = task(drift_windows.read_quality_series, name="read-quality-series", **IO_RETRIES,
                           cache_policy=NO_CACHE)
read_index_pair = task(drift_windows.read_index_pair, name="read-index-pair", **IO_RETRIES, cache_policy=NO_CACHE)
measure_windows = task(drift_signals.measure_windows, name="measure-drift-windows", cache_policy=NO_CACHE)
detect_drift = task(drift_signals.detect_drift, name="detect-drift", cache_policy=NO_CACHE)
log_drift_run = writer(drift_run.log_drift_run, "log-drift-run")


@task(name="raise-drift-alarm", cache_policy=NO_CACHE)
def raise_alarm(tracker: Tracker, config: DriftConfig, report: FlowReport, windows: DriftWindows,
                signals: list[SignalResult]) -> str:
    """On drift: a Prefect event `reasonloop.drift.detected` (resource `reasonloop.drift.<experiment id>`, for
    automations) and, when configured, the webhook. A webhook that fails is a warning. Returns (and tags the drift run
    with `drift.webhook`) what happened: no drift | off | sent | failed."""
    payload = drift_run.drift_alert(tracker, report, windows, signals)
    if payload is None:
        return "no drift"
    emit_event(event=drift_run.EVENT, payload=payload,
               resource={"prefect.resource.id": f"reasonloop.drift.{report.experiment_id}",
                         "prefect.resource.name": tracker.experiment_name("drift")},
               related=[{"prefect.resource.id": f"mlflow.run.{report.run_id}", "prefect.resource.role": "drift-run"}])
    status, error = drift_run.deliver_alert(tracker, config, report.run_id, payload)
    if error:
        get_run_logger().warning("drift webhook not delivered (%s); the drift run %s holds the report", error,
                                 report.run_id)
    return status
