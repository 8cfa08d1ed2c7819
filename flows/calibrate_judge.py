"""Judge calibration: the configured judge against human consistency labels -> agreement per domain -> MLflow."""

from __future__ import annotations

from prefect import flow

from reasonloop.providers import build_embedder, build_judge
from reasonloop.schemas import FlowReport
from reasonloop.settings import Settings, load_settings
from tasks.calibrate import calibrate_judge
from tasks.load import load_labeled_pairs
from tasks.track import log_calibration_run, publish_summary


@flow(name="judge-calibration", validate_parameters=False)
def judge_calibration(settings: Settings | None = None) -> FlowReport:
    settings = settings or load_settings()
    pairs = load_labeled_pairs(settings.judge.calibration_data)
    embedder = build_embedder(settings)
    judge = build_judge(settings, embedder)
    slices, verdicts = calibrate_judge(judge, pairs)
    report = log_calibration_run(settings, embedder, judge, slices, pairs, verdicts)
    publish_summary(report)
    return report
