"""The nightly eval's MLflow run: params, metrics with intervals, the per-question table and records, traces, the
gate, the review queue, the report; and finding a run that was logged but whose flow was killed before it ended."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from reasonloop.evaluation.aggregate import interval_metrics, results_table, summary_rows
from reasonloop.evaluation.config import JudgeConfig, ReviewConfig
from reasonloop.evaluation.gate import GateReport
from reasonloop.evaluation.review import QUEUE_ARTIFACT, review_queue
from reasonloop.evaluation.safety import SafetyReport
from reasonloop.monitoring.report import close_figures, plots, render_html
from reasonloop.monitoring.run_fields import (
    gate_metrics,
    index_params,
    numeric,
    quality_metrics,
    retrieval_params,
    safety_metrics,
)
from reasonloop.monitoring.tracking import Tracker, run_tags, writer_alive
from reasonloop.paths import shown
from reasonloop.reasoning.config import LLMConfig
from reasonloop.reasoning.llm_calls import refusal
from reasonloop.reasoning.prompt_registry import register_prompt
from reasonloop.reasoning.strategies import Reasoner
from reasonloop.reasoning.traces import log_question_traces
from reasonloop.redact import redact, redact_url
from reasonloop.retrieval.config import RetrievalConfig
from reasonloop.retrieval.index_versions import Manifest
from reasonloop.schemas import EvalSummary, FlowReport, QuestionResult, RetrievalQuality, RetrievedChunk


def scored(chunks: list[RetrievedChunk]) -> list[dict[str, Any]]:
    return [c.model_dump(include={"chunk_id", "doc_id", "rank", "score", "dense_score", "bm25_score"}) for c in chunks]


def trace(result: QuestionResult) -> dict[str, Any]:
    """One question's audit record: what retrieval returned with its scores, every step of its strategy (the exact
    rendered messages, the raw reply, usage; ReAct's searches with their hits), what was parsed, and the verdict."""
    answer = result.answer
    return {"question_id": result.question.id, "question": result.question.question, "prompt": answer.prompt,
            "strategy": answer.strategy, "route": answer.route, "complexity": answer.complexity,
            "cache_hit": answer.cache_hit, "retrieved": scored(result.retrieved), "searched": scored(answer.searched),
            "steps": [step.model_dump() for step in answer.steps],
            "parsed": answer.model_dump(exclude={"raw_output", "steps", "searched"}),
            "verdict": result.verdict.model_dump() if result.verdict else None}


def reasoning_params(reasoner: Reasoner, registered: dict[str, Any]) -> dict[str, Any]:
    """The prompt of each role (name@version, content hash, registry URI) and the strategy settings."""
    cfg, params = reasoner.config, {}
    for role, prompt in reasoner.prompts.items():
        params |= {f"prompt.{role}": prompt.ref, f"prompt.{role}.sha256": prompt.sha256,
                   f"prompt.{role}.registry_uri": f"prompts:/{registered[prompt.ref].name}/"
                                                  f"{registered[prompt.ref].version}"}
    refused = refusal(reasoner.model)
    params |= {"llm.structured_output": reasoner.structured_output,
               "llm.structured_output_used": "prompt" if refused else reasoner.structured_output,
               **({"llm.structured_output_refused": redact(refused)} if refused else {})}
    return {**params, "prompt.paths": ",".join(p.ref for p in reasoner.paths),
            "reasoning.strategy": cfg.strategy, "reasoning.routes": json.dumps(cfg.routes, sort_keys=True),
            "reasoning.thresholds": f"simple<{cfg.simple_below}, complex>={cfg.complex_from}",
            "reasoning.self_consistency": cfg.self_consistency.model_dump_json(),
            "reasoning.react": cfg.react.model_dump_json(), "optimize": reasoner.optimize.model_dump_json()}


IDENTITY_TAG = "reasonloop.run_identity"  # settings, question set and index version: what a checkpoint belongs to


FLOW_COMPLETE_TAG = "reasonloop.flow_complete"


def interrupted_eval(tracker: Tracker, identity: str) -> tuple[FlowReport, GateReport] | None:
    """A nightly-eval run of this identity that was logged in full but whose flow was killed before it ended (its
    drift check had not run) by a process that is gone: its report and gate, so the re-run finishes that run
    instead of logging a duplicate. None when there is none."""
    client, experiment_id = tracker.client(), tracker.experiment_id("nightly-eval")  # looks, creates nothing
    if experiment_id is None:
        return None
    logged = client.search_runs([experiment_id], order_by=["attributes.start_time DESC"], max_results=5,
                                filter_string=f"tags.`{IDENTITY_TAG}` = '{identity}' and tags.`{FLOW_COMPLETE_TAG}` "
                                              "= 'false' and attributes.status = 'FINISHED'")
    found = [r for r in logged if not writer_alive(r.data.tags)]
    if not found:
        return None
    run = found[0]
    with tempfile.TemporaryDirectory() as tmp:
        summary = EvalSummary.model_validate_json(Path(client.download_artifacts(
            run.info.run_id, "eval/summary.json", tmp)).read_text(encoding="utf-8"))
        gate = GateReport.model_validate_json(Path(client.download_artifacts(
            run.info.run_id, "eval/gate.json", tmp)).read_text(encoding="utf-8"))
    report = FlowReport(flow="nightly-eval", run_id=run.info.run_id, experiment_id=experiment_id,
                        tracking_uri=tracker.uri, metrics=run.data.metrics,
                        rows={**summary_rows(summary), "resumed": "this run was logged before its flow was "
                              "interrupted; the re-run finished it"})
    return report, gate


def log_results(results: list[QuestionResult], queue: list[dict[str, Any]], summary: EvalSummary,
                extra: dict[str, list[dict[str, Any]]], table: pd.DataFrame | None = None) -> None:
    """Into the active run, under `eval/`: the per-question table, every question's record (`results.jsonl`, what
    the gate and the drift flow read back), the review queue (`review.jsonl`, and a table), the summary, and `extra`
    JSON-lines files."""
    import mlflow

    mlflow.log_table(results_table(results) if table is None else table, artifact_file="eval/questions.json")
    if queue:
        mlflow.log_table(pd.DataFrame(queue).assign(reasons=lambda f: f["reasons"].str.join(" | ")),
                         artifact_file="eval/review.json")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "results.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in results), encoding="utf-8")
        (folder / Path(QUEUE_ARTIFACT).name).write_text("".join(json.dumps(row) + "\n" for row in queue),
                                                         encoding="utf-8")
        (folder / "summary.json").write_text(json.dumps(summary.model_dump(), indent=2), encoding="utf-8")
        for name, rows in extra.items():
            (folder / name).write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        mlflow.log_artifacts(tmp, artifact_path="eval")


@dataclass(frozen=True)
class EvalRun:
    """What a nightly eval logs: its outcome, and the configuration sections that describe how it was produced."""
    reasoner: Reasoner
    judge_version: str
    index: Manifest
    summary: EvalSummary
    quality: list[RetrievalQuality]
    results: list[QuestionResult]
    gate: GateReport
    safety: SafetyReport | None
    duration_s: float
    identity: str
    llm: LLMConfig
    judge: JudgeConfig
    retrieval: RetrievalConfig
    review: ReviewConfig
    questions_path: Path
    log_traces: bool


def log_eval_run(tracker: Tracker, run: EvalRun, *,
                 context_tags: dict[str, str] | None = None) -> FlowReport:
    """One MLflow run: params (providers, prompt name@version, retriever, config hash, commit), metrics with
    their intervals and the gate's decision in one batch, the per-question table, the full per-question records,
    the gate report and regressed questions, and the prompts linked from the registry."""
    import mlflow

    results, summary, gate, safety = run.results, run.summary, run.gate, run.safety
    experiment_id = tracker.ensure_experiment("nightly-eval")
    registered = {p.ref: register_prompt(p) for p in run.reasoner.templates()}
    queue = review_queue(results, run.review)
    metrics = {**numeric(summary.model_dump()), **interval_metrics(summary), **quality_metrics(run.quality),
               **gate_metrics(gate), **safety_metrics(safety), "duration_s": run.duration_s, "n_review": len(queue)}
    params = {
        **tracker.params, **index_params(run.index),
        "llm.provider": run.llm.provider, "llm.model": run.llm.model,
        "llm.base_url": redact_url(run.llm.base_url), "llm.temperature": run.llm.temperature,
        "judge.provider": run.judge.provider, "judge.model": run.judge.model, "judge.version": run.judge_version,
        **reasoning_params(run.reasoner, registered),
        **retrieval_params(run.retrieval), "questions.path": shown(run.questions_path),
        "questions.count": len(results), "gate.baseline_run_id": gate.baseline_run_id or "none",
    }
    failed = [{"question_id": r.question.id, "question": r.question.question, "error": r.answer.error,
               "attempts": sum(step.attempts for step in r.answer.steps if step.kind == "llm")}
              for r in results if r.answer.error is not None]
    tags = {**run_tags("nightly-eval", context_tags), "reasonloop.gate": "passed" if gate.passed else "failed",
            "reasonloop.status": "partial" if failed else "complete", IDENTITY_TAG: run.identity,
            FLOW_COMPLETE_TAG: "false"}  # true once the flow is through (its drift check ran)
    with mlflow.start_run(experiment_id=experiment_id, run_name="nightly-eval", tags=tags) as logged:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        log_results(results, queue, summary, {"traces.jsonl": [trace(r) for r in results]})
        mlflow.log_dict(gate.model_dump(exclude={"regressions"}), "eval/gate.json")
        if failed:
            mlflow.log_dict(failed, "eval/failed.json")
        if safety is not None:
            mlflow.log_dict(safety.model_dump(), "eval/safety.json")
        figures = plots(results)
        for name, figure in figures.items():
            mlflow.log_figure(figure, f"eval/plots/{name}.png")
        mlflow.log_text(render_html(summary, gate, run.judge_version, figures), "eval/report.html")
        close_figures(figures)
        if gate.regressions:
            mlflow.log_table(pd.DataFrame([r.model_dump() for r in gate.regressions]),
                             artifact_file="eval/regressions.json")
        for version in registered.values():
            mlflow.MlflowClient().link_prompt_version_to_run(logged.info.run_id, version)
        if run.log_traces:
            log_question_traces(results, experiment_id, logged.info.run_id)
    return FlowReport(flow="nightly-eval", run_id=logged.info.run_id, experiment_id=experiment_id,
                      tracking_uri=tracker.uri, metrics=metrics,
                      rows={**summary_rows(summary), "for human review": f"{len(queue)} (reasonloop review list)",
                            **({"safety suite": f"{safety.pass_rate:.1%} of {safety.n} attacks withstood"}
                               if safety else {}),
                            "regression gate": gate.summary(), "index version": run.index.ref})
