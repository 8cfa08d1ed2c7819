"""Live eval: the last `live.window` of served traffic (the endpoint's traces, or any app's traced into MLflow) ->
judged without references (grounding against the traced context, relevance, reasoning quality) in batches ->
aggregate, what users said, safety flags, per arm -> MLflow (`<prefix>-live-eval`) -> the drift flow on this live
window against the previous ones."""

from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.utilities.annotations import quote

from flows.drift import drift
from flows.nightly_eval import batched, eval_batch_size, eval_task_runner
from reasonloop.evaluation.judges import Judge
from reasonloop.monitoring.live_eval_run import LIVE_EVAL_KIND, LiveEvalRun
from reasonloop.providers import build_embedder, build_judge, build_tracker
from reasonloop.reasoning.answer_store import RecordStore
from reasonloop.schemas import FlowReport, LiveWindow, QuestionResult
from reasonloop.settings import Settings, load_settings
from tasks.aggregate import collect_results, summarize_results
from tasks.judge import judge_answers
from tasks.live import log_live_eval_run, read_live_traffic
from tasks.track import publish_summary


def judge_window(settings: Settings, window: LiveWindow, judge: Judge, store: RecordStore | None = None
                 ) -> list[QuestionResult]:
    """Every trace of the window judged, in batches on the configured task runner (reusing `store`'s verdicts)."""
    pending = []
    with eval_task_runner(settings) as runner:
        for batch in batched([r.result for r in window.records], eval_batch_size(settings)):
            questions, contexts = [r.question for r in batch], [r.retrieved for r in batch]
            answers = [r.answer for r in batch]
            verdicts = runner.submit(judge_answers, {"questions": questions, "contexts": contexts,
                                                     "answers": answers, "judge": judge,
                                                     "store": store})
            pending.append(runner.submit(collect_results, {"questions": questions, "contexts": contexts,
                                                           "answers": answers, "verdicts": verdicts}))
        return [r for future in pending for r in future.result()]


@flow(name="nightly-eval-live", validate_parameters=False)
def nightly_eval_live(settings: Settings | None = None, since: str | None = None) -> FlowReport:
    settings = settings or load_settings()
    started, tracker = time.perf_counter(), build_tracker(settings)
    window = read_live_traffic(tracker, settings.live, since or settings.live.window)
    embedder = build_embedder(settings)
    judge = build_judge(settings, embedder)
    results = judge_window(settings, window, judge)
    summary = summarize_results(quote(results), None, settings.optimize.alpha)
    report = log_live_eval_run(tracker, LiveEvalRun(
        window=window, results=results, summary=summary, judge_version=judge.version, judge=settings.judge,
        review=settings.review, alpha=settings.optimize.alpha, duration_s=time.perf_counter() - started))
    publish_summary(report)
    if settings.drift.enabled:  # drift never fails the eval
        drift_state = drift(settings, run_id=report.run_id, kind=LIVE_EVAL_KIND, return_state=True)
        if drift_state.is_failed():
            get_run_logger().warning("drift flow failed (%s); the live eval run is logged", drift_state.message)
    return report
