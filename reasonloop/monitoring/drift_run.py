"""The drift flow's MLflow run (signals as metrics, the windows as params, the report and plots; the verdict also on
the nightly run it judged) and its alert: the payload, and the webhook for people."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from typing import Any

from reasonloop.monitoring.config import DriftConfig
from reasonloop.monitoring.drift_report import alert_payload, drift_plots, drift_rows, render_drift_html, signal_metrics
from reasonloop.monitoring.drift_signals import WindowSamples
from reasonloop.monitoring.drift_stats import SignalResult
from reasonloop.monitoring.drift_windows import DriftWindows, QualitySeries
from reasonloop.monitoring.report import close_figures
from reasonloop.monitoring.tracking import Tracker, run_tags
from reasonloop.redact import redact
from reasonloop.schemas import FlowReport

EVENT = "reasonloop.drift.detected"


def log_drift_run(tracker: Tracker, config: DriftConfig, windows: DriftWindows, samples: WindowSamples,
                  series: QualitySeries, signals: list[SignalResult],
                  *, context_tags: dict[str, str] | None = None) -> FlowReport:
    """One run in `<prefix>-drift`: per-signal metrics, the windows as params, tags `drift` and `drift.signals`,
    `drift/signals.json`, `drift/report.html` and its plots; the current nightly-eval run is tagged with the
    verdict and this run's id."""
    import mlflow

    experiment_id = tracker.ensure_experiment("drift")
    fired = [s.signal for s in signals if s.drifted]
    current_id = windows.current.run_id if windows.current else None
    reference_ids = [r.run_id for r in windows.reference]
    metrics = signal_metrics(signals)
    params = {**tracker.params, "current.run_id": current_id or "none", "current.kind": windows.kind,
              "reference.kind": windows.reference_kind, "reference.run_ids": ",".join(reference_ids) or "none",
              "window": config.window, "min_samples": config.min_samples, "quality.history": config.quality.history,
              "quality.reference_runs": config.quality.reference_runs,
              "webhook": "configured" if config.webhook() else "none"}
    tags = {**run_tags("drift", context_tags), "drift": str(bool(fired)).lower(), "drift.signals": ",".join(fired)}
    rows = drift_rows(signals, current_id, windows.describe_reference())
    document = {"drift": bool(fired), "fired": fired, "current_run_id": current_id, "note": windows.note,
                "reference_kind": windows.reference_kind, "reference_run_ids": reference_ids,
                "quality_run_ids": series.run_ids, "signals": [s.model_dump() for s in signals]}
    figures = drift_plots(signals, numeric=samples.numeric, categorical=samples.categorical,
                          questions=samples.questions, series=series.values, n_reference=series.n_reference)
    try:
        with mlflow.start_run(experiment_id=experiment_id, run_name="drift", tags=tags) as run:
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            mlflow.log_dict(document, "drift/signals.json")
            for name, figure in figures.items():
                mlflow.log_figure(figure, f"drift/plots/{name}.png")
            mlflow.log_text(render_drift_html(signals, rows, figures), "drift/report.html")
    finally:
        close_figures(figures)
    if current_id:  # the verdict on the nightly run too, as tags and as vitals over time
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        flags = {"drift": float(bool(fired)), "drift.n_signals": float(len(fired)),
                 **{f"drift.{s.signal}": float(s.drifted) for s in signals if s.status != "insufficient_data"}}
        tracker.client().log_batch(
            current_id, metrics=[Metric(k, v, now, 0) for k, v in flags.items()],
            tags=[RunTag("reasonloop.drift", tags["drift"]), RunTag("reasonloop.drift.run_id", run.info.run_id)])
    return FlowReport(flow="drift", run_id=run.info.run_id, experiment_id=experiment_id,
                      tracking_uri=tracker.uri, metrics=metrics, rows=rows)


def post_webhook(url: str, payload: dict[str, Any], timeout_s: float) -> str | None:
    """POST `payload` as JSON; None when the endpoint answered 2xx, else why not. The reason never holds the URL
    (a chat webhook's URL is its secret)."""
    if not url.startswith(("http://", "https://")):
        return "not an http(s) URL"
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "reasonloop-drift"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s):  # the scheme is checked above
            pass
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        return redact(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}")
    return None


def drift_alert(tracker: Tracker, report: FlowReport, windows: DriftWindows,
                signals: list[SignalResult]) -> dict[str, Any] | None:
    """The alert's payload when a signal fired (None when none did): the fired signals, both windows, the drift run
    and where to see it."""
    if not any(s.drifted for s in signals):
        return None
    return alert_payload(signals, drift_run_id=report.run_id, experiment=tracker.experiment_name("drift"),
                         current_run_id=windows.current.run_id if windows.current else None,
                         reference_kind=windows.reference_kind,
                         reference_run_ids=[r.run_id for r in windows.reference],
                         run_url=redact(tracker.run_url(report.experiment_id, report.run_id)))


def deliver_alert(tracker: Tracker, config: DriftConfig, run_id: str,
                  payload: dict[str, Any]) -> tuple[str, str | None]:
    """POST the alert to the configured webhook; tags the drift run with `drift.webhook` and returns what happened
    (off | sent | failed) and, when it failed, why (never the URL)."""
    url, status, error = config.webhook(), "off", None
    if url:
        error = post_webhook(url, {"event": EVENT, **payload}, config.webhook_timeout_s)
        status = "sent" if error is None else "failed"
    tracker.client().set_tag(run_id, "drift.webhook", status)
    return status, error
