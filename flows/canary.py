"""Canary (champion/challenger): a candidate model or prompt version answers a seeded slice of the question set
beside production; the regression gate compares the two arms question by question (paired bootstrap, plus the
candidate's safety suite), a pairwise judge asked in both orders reports which answers are better, and a passing
candidate is promoted (prompt alias / production pointer). A failing one leaves production as it was."""

from __future__ import annotations

from functools import partial

from prefect import flow

from flows.nightly_eval import evaluate
from reasonloop.evaluation.canary import Arm, gate_arms, parse_candidate, sample_slice
from reasonloop.providers import (
    build_embedder,
    build_judge,
    build_pairwise_judge,
    build_tracker,
    open_serving_index,
    resolve_prompt,
)
from reasonloop.schemas import FlowReport
from reasonloop.settings import Settings, load_settings
from tasks.aggregate import summarize_results
from tasks.canary import compare_pairwise, promote_candidate, stage_candidate
from tasks.load import load_questions
from tasks.safety import load_safety_cases, run_safety_suite
from tasks.track import log_canary_run, publish_summary


@flow(name="canary", validate_parameters=False)
def canary(candidate: str, settings: Settings | None = None, slice_size: int | None = None) -> FlowReport:
    settings = settings or load_settings()
    spec = parse_candidate(candidate, settings.prompts)
    challenger = settings.updated(stage_candidate(spec, settings.prompts, settings.llm.model,
                                                  settings.canary.candidate_alias, partial(resolve_prompt, settings)))
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
        arms[name] = Arm(arm_settings.llm.model, evaluated.reasoner, evaluated.results, summary,
                         run_safety_suite(evaluated.reasoner, arm_settings.llm.limits(), cases))
    gate = gate_arms(settings.gate, arms["production"], arms["candidate"])
    pairwise = build_pairwise_judge(settings, embedder)
    pairs = compare_pairwise(pairwise, arms["production"].results, arms["candidate"].results)
    promoted = promote_candidate(spec, settings.prompts, settings.canary.alias, settings.pointer_path) \
        if gate.passed else ""
    report = log_canary_run(build_tracker(settings), spec, arms, judge.version, gate, pairs, pairwise.version,
                            promoted, settings.canary.seed)
    for evaluated in evaluations:  # logged: the arms' checkpoints have served
        evaluated.finish()
    publish_summary(report)
    return report
