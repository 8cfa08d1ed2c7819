"""Judge calibration: the configured judge against human consistency labels -> agreement per domain and the floor
check -> MLflow. Judge promotion: a candidate judge model or rubric version is calibrated the same way and moved
into production only when it reaches the floor."""

from __future__ import annotations

from functools import partial

from prefect import flow

from reasonloop.evaluation.canary import parse_candidate
from reasonloop.providers import build_embedder, build_judge, build_tracker, resolve_prompt
from reasonloop.schemas import FlowReport
from reasonloop.settings import Settings, load_settings
from tasks.calibrate import calibrate_judge
from tasks.canary import promote_candidate, stage_candidate
from tasks.load import load_labeled_pairs
from tasks.track import log_calibration_run, publish_summary, tag_run


@flow(name="judge-calibration", validate_parameters=False)
def judge_calibration(settings: Settings | None = None) -> FlowReport:
    settings = settings or load_settings()
    pairs = load_labeled_pairs(settings.judge.calibration_data)
    embedder = build_embedder(settings)
    judge = build_judge(settings, embedder)
    slices, verdicts = calibrate_judge(judge, pairs)
    report = log_calibration_run(build_tracker(settings), judge, settings.judge, slices, pairs, verdicts)
    publish_summary(report)
    return report


@flow(name="judge-promotion", validate_parameters=False)
def promote_judge(candidate: str, settings: Settings | None = None) -> FlowReport:
    settings = settings or load_settings()
    spec = parse_candidate(candidate, settings.prompts, target="judge")
    changes = stage_candidate(spec, settings.prompts, settings.judge.model, settings.canary.candidate_alias,
                              partial(resolve_prompt, settings))
    report = judge_calibration(settings.updated(changes))
    promoted = promote_candidate(spec, settings.prompts, settings.canary.alias, settings.pointer_path) \
        if report.metrics["floor_passed"] else ""
    tag_run(build_tracker(settings), report.run_id, {"reasonloop.judge_promotion": "promoted" if promoted else
                                                     "refused", "candidate": spec.spec})
    return report.model_copy(update={
        "metrics": {**report.metrics, "promoted": float(bool(promoted))},
        "rows": {**report.rows, "decision": f"promoted: {promoted}" if promoted else
                 "refused: under its floor, the production judge is unchanged"}})
