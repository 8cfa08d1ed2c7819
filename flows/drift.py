"""Drift: the newest (or a given) nightly-eval run (or live-eval run: a window of live traffic) against its
reference -> questions, retrieval, answers, the nightly metric series and the index it read -> drift statistics ->
MLflow (`<prefix>-drift`) -> on drift, a Prefect event and the webhook.

Thin data is a result, not a failure: with no earlier run, too few questions or a pruned index version, the signal
says `insufficient_data` and why, and never fires.
"""

from __future__ import annotations

from prefect import flow
from prefect.utilities.annotations import quote

from reasonloop.providers import build_embedder, build_tracker
from reasonloop.schemas import FlowReport
from reasonloop.settings import Settings, load_settings
from tasks.drift import (
    detect_drift,
    log_drift_run,
    measure_windows,
    raise_alarm,
    read_index_pair,
    read_quality_series,
    read_windows,
)
from tasks.track import publish_summary


@flow(name="drift", validate_parameters=False)
def drift(settings: Settings | None = None, run_id: str | None = None, kind: str = "nightly-eval") -> FlowReport:
    settings = settings or load_settings()
    config, tracker = settings.drift, build_tracker(settings)
    windows = read_windows(tracker, config.window, run_id, kind)
    embedder = build_embedder(settings)
    # quote(): Prefect would otherwise walk every per-question record looking for futures
    samples = measure_windows(quote(windows), embedder, config.output)
    series = read_quality_series(tracker, windows.current, config.quality)  # the current run's own series
    index_pair = read_index_pair(settings.chroma, settings.chroma_path, quote(windows))
    signals = detect_drift(quote(samples), series, quote(index_pair), config, windows.note)
    report = log_drift_run(tracker, config, quote(windows), quote(samples), series, signals)
    publish_summary(report)
    raise_alarm(tracker, config, report, quote(windows), signals)
    return report
