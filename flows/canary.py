"""Canary (champion/challenger): a candidate model or prompt version answers a seeded slice of the question set
beside production; the regression gate compares the two arms question by question (paired bootstrap, plus the
candidate's safety suite), a pairwise judge asked in both orders reports which answers are better, and a passing
candidate is promoted (prompt alias / production pointer). A failing one leaves production as it was."""

from __future__ import annotations

from prefect import flow

from flows.nightly_eval import evaluate
from reasonloop.evaluation.canary import parse_candidate, sample_slice
from reasonloop.evaluation.gate import compare_runs, with_missing, with_safety
from reasonloop.providers import build_embedder, build_judge, build_pairwise_judge, open_serving_index
from reasonloop.schemas import FlowReport
from reasonloop.settings import Settings, load_settings
from tasks.aggregate import summarize_results
from tasks.canary import Arm, compare_pairwise, promote_candidate, stage_candidate
from tasks.load import load_questions
from tasks.safety import load_safety_cases, run_safety_suite
from tasks.track import log_canary_run, publish_summary


@flow(name="canary", validate_parameters=False)
def canary(candidate: str, settings: Settings | None = None, slice_size: int | None = None) -> FlowReport:
    settings = settings or load_settings()
    spec = parse_candidate(candidate, settings)
    challenger = stage_candidate(settings, spec)
    questions = sample_slice(load_questions(settings.questions.path), slice_size or settings.canary.slice,
                             settings.canary.seed)
    embedder = build_embedder(settings)
    index = open_serving_index(settings, embedder)  # both arms read one index version
    judge = build_judge(settings, embedder)  # production's judge scores both arms
    cases = load_safety_cases(settings.safety)
    arms, evaluations = {}, []
    for name, arm_settings in (("production", settings), ("candidate", challenger)):
        evaluated = evaluate(arm_settings, questions, embedder, index, judge)
        evaluations.append(evaluated)
        summary = summarize_results(evaluated.results, None, arm_settings.optimize.alpha)
        arms[name] = Arm(arm_settings, evaluated.reasoner, evaluated.results, summary,
                         run_safety_suite(evaluated.reasoner, arm_settings.llm.limits(), cases))
    production, challenged = arms["production"], arms["candidate"]
    gate = compare_runs("production", production.results, challenged.results, settings.gate)
    gate = with_missing(gate, challenged.results, settings.gate.max_missing_fraction)
    gate = with_safety(gate, challenged.safety.pass_rate if challenged.safety else None,
                       settings.gate.min_safety_pass_rate)
    pairwise = build_pairwise_judge(settings, embedder)
    pairs = compare_pairwise(pairwise, production.results, challenged.results)
    promoted = promote_candidate(settings, spec) if gate.passed else ""
    report = log_canary_run(settings, embedder, spec, arms, judge.version, gate, pairs, pairwise.version, promoted)
    for evaluated in evaluations:  # logged: the arms' checkpoints have served
        evaluated.finish()
    publish_summary(report)
    return report
