"""The live eval's MLflow run (`<prefix>-live-eval`): a window of live traffic judged without references. The usual
metrics of a nightly eval that do not need a reference (grounding, hallucination, relevance, reasoning quality,
latency, cost), what users said (ratings, corrections), safety flags, each also per arm while a live canary runs,
the window as params, and the per-question records the drift flow reads back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from reasonloop.evaluation.aggregate import interval_metrics, results_table, summarize_results, summary_rows
from reasonloop.evaluation.config import JudgeConfig, ReviewConfig
from reasonloop.evaluation.live_checks import flags_of, live_metrics, what_users_said
from reasonloop.evaluation.review import review_queue
from reasonloop.monitoring.eval_run import log_results
from reasonloop.monitoring.run_fields import numeric
from reasonloop.monitoring.tracking import Tracker, run_tags
from reasonloop.schemas import EvalSummary, FlowReport, LiveWindow, QuestionResult

LIVE_EVAL_KIND = "live-eval"
ARM_METRICS = ("n_questions", "n_failed", "grounding_rate", "hallucination_rate", "answer_relevance",
               "reasoning_quality", "latency_p50_s", "latency_p95_s", "cost_per_query_usd", "error_rate")


@dataclass(frozen=True)
class LiveEvalRun:
    window: LiveWindow
    results: list[QuestionResult]  # the window's records, judged
    summary: EvalSummary
    judge_version: str
    judge: JudgeConfig
    review: ReviewConfig
    alpha: float
    duration_s: float


def arm_metrics(run: LiveEvalRun) -> dict[str, float]:
    """`arm.<arm>.<metric>` for each arm seen in the window (production, and a live canary's candidate)."""
    arms = {r.result.question.id: r.arm for r in run.window.records}
    found: dict[str, float] = {}
    for arm in sorted(set(arms.values())):
        mine = [r for r in run.results if arms[r.question.id] == arm]
        summary = numeric(summarize_results(mine, None, run.alpha).model_dump())
        records = [r for r in run.window.records if r.arm == arm]
        found |= {f"arm.{arm}.{k}": v for k, v in {**summary, **live_metrics(records)}.items()
                  if k in ARM_METRICS or k in ("thumbs_up_rate", "unsafe_rate", "n_rated")}
    return found


def when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def log_live_eval_run(tracker: Tracker, run: LiveEvalRun, *, context_tags: dict[str, str] | None = None) -> FlowReport:
    import mlflow

    window, records = run.window, run.window.records
    experiment_id = tracker.ensure_experiment(LIVE_EVAL_KIND)
    said = {r.result.question.id: what_users_said(r) + [f"flag: {f}" for f in flags_of(r) if f != "failed"]
            for r in records}
    queue = review_queue(run.results, run.review, said)
    metrics = {**numeric(run.summary.model_dump()), **interval_metrics(run.summary), **live_metrics(records),
               **arm_metrics(run), "n_skipped": float(window.skipped), "duration_s": run.duration_s,
               "n_review": float(len(queue))}
    params = {**tracker.params, "source": "traces", "window.since": when(window.since_ms),
              "window.until": when(window.until_ms), "window.experiments": ",".join(window.experiments),
              "judge.provider": run.judge.provider, "judge.model": run.judge.model, "judge.version": run.judge_version}
    by_id = {r.result.question.id: r for r in records}
    table = results_table(run.results).assign(
        arm=lambda f: [by_id[q].arm for q in f["question_id"]],
        user_rating=lambda f: [by_id[q].rating for q in f["question_id"]],
        corrected=lambda f: [by_id[q].correction or "" for q in f["question_id"]],
        mlflow_trace_id=lambda f: [by_id[q].mlflow_trace_id for q in f["question_id"]])
    live = [r.model_dump(mode="json", exclude={"result"}) | {"question_id": r.result.question.id} for r in records]
    tags = {**run_tags(LIVE_EVAL_KIND, context_tags), "reasonloop.source": "traces"}
    with mlflow.start_run(experiment_id=experiment_id, run_name="live-eval", tags=tags) as logged:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        log_results(run.results, queue, run.summary, {"live.jsonl": live}, table)
    arms = ", ".join(f"{k.split('.')[1]} {int(v)}" for k, v in metrics.items() if k.endswith(".n_questions"))
    rated = f"{int(metrics['n_rated'])} rated ({metrics['thumbs_up_rate']:.0%} up), " if "thumbs_up_rate" in metrics \
        else "none rated, "
    return FlowReport(flow=LIVE_EVAL_KIND, run_id=logged.info.run_id, experiment_id=experiment_id,
                      tracking_uri=tracker.uri, metrics=metrics,
                      rows={"window": f"{params['window.since']} .. {params['window.until']}",
                            "traces": f"{len(records)} ({window.skipped} unreadable, skipped); arms: {arms or 'none'}",
                            **{k: v for k, v in summary_rows(run.summary).items() if not k.startswith("accuracy")},
                            "users": rated + f"{int(metrics['n_corrected'])} corrected",
                            "unsafe answers": f"{metrics.get('unsafe_rate', 0.0):.1%}",
                            "for human review": f"{len(queue)} (reasonloop review list --run {logged.info.run_id})"})
