"""Nightly eval: questions -> retrieve -> reason (the configured strategies) -> judge -> aggregate -> gate against
the baseline run, and the safety suite against its floor -> MLflow -> the drift flow on this run; a failed gate
fails the flow after the run is logged, and questions left unanswered after their retries end it in the state
Partial (completed, not whole).

Work runs in batches of questions per task (a task run costs 10-16 ms of overhead in the flow's process, more in a
Dask worker), on a thread pool or a Dask cluster (`prefect.task_runner`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from prefect import State, flow, get_run_logger
from prefect.states import Completed
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from flows.drift import drift
from reasonloop.evaluation.gate import GateReport
from reasonloop.evaluation.judges import Judge
from reasonloop.monitoring.eval_run import FLOW_COMPLETE_TAG, EvalRun
from reasonloop.monitoring.tracking import Tracker
from reasonloop.providers import (
    ServingIndex,
    build_embedder,
    build_judge,
    build_reasoner,
    build_tracker,
    open_serving_index,
)
from reasonloop.reasoning.answer_store import RecordStore, open_record_store, run_identity
from reasonloop.reasoning.strategies import Reasoner
from reasonloop.retrieval.embeddings import Embedder
from reasonloop.schemas import FlowReport, Question, QuestionResult
from reasonloop.settings import Settings, load_settings
from tasks.aggregate import collect_results, summarize_results
from tasks.gate import check_regression, enforce_gate
from tasks.judge import judge_answers
from tasks.load import load_questions
from tasks.reason import answer_questions, complete_checkpoint
from tasks.retrieve import rank_documents, retrieve_chunks, score_rankings
from tasks.safety import load_safety_cases, run_safety_suite
from tasks.track import interrupted_eval, log_eval_run, publish_summary, tag_run


def eval_task_runner(settings: Settings) -> TaskRunner:
    """Where the batches run, chosen at run time from config (a deployed flow's decorator cannot know it): a
    bounded thread pool (Prefect's default pool is unbounded), or a Dask cluster (`prefect.dask`), whose workers
    rebuild the reasoner, retriever and judge from their recipes."""
    cfg = settings.prefect
    if cfg.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=cfg.max_workers)
    from prefect_dask import DaskTaskRunner

    if cfg.dask.address:
        return DaskTaskRunner(address=cfg.dask.address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": cfg.dask.n_workers, "processes": True,
                                          "threads_per_worker": cfg.dask.threads_per_worker})


def eval_batch_size(settings: Settings) -> int:
    """Questions per task: `prefect.dask.batch_size` on Dask, whose task runs each pay for Prefect's context in the
    worker; `eval.batch_size` on threads."""
    return settings.prefect.dask.batch_size if settings.prefect.task_runner == "dask" else settings.eval.batch_size


def batched(questions: list[Question], size: int) -> list[list[Question]]:
    return [questions[i:i + size] for i in range(0, len(questions), size)]


@dataclass(frozen=True)
class Evaluated:
    reasoner: Reasoner
    results: list[QuestionResult]
    stores: list[RecordStore | None]  # the run's answer and verdict stores: its checkpoint until it is logged
    rankings: list[list[str]]  # per question, documents ranked for retrieval quality (empty unless asked for)

    def finish(self) -> None:
        """The run is logged: drop its checkpoint, unless questions are unanswered (a re-run asks only those)."""
        if all(r.answer.error is None for r in self.results):
            complete_checkpoint(self.stores)


def evaluate(settings: Settings, questions: list[Question], embedder: Embedder, index: ServingIndex,
             judge: Judge, rank: bool = False) -> Evaluated:
    """Retrieve, reason and judge every question in batches (submitted to the configured task runner), resuming
    from and saving to the answer and verdict stores; the nightly eval and each arm of a canary run this. With
    `rank`, each batch also ranks documents for retrieval quality where its questions were embedded (on Dask, the
    workers), so the flow's process does not embed every question again."""
    reasoner = build_reasoner(settings, embedder, index)
    run = run_identity(settings.config_hash(), questions, index.manifest.content_hash)
    answer_store = open_record_store(settings.state_dir, settings.cache, run, "answers")
    verdict_store = open_record_store(settings.state_dir, settings.cache, run, "verdicts")
    pending, ranking = [], []
    with eval_task_runner(settings) as runner:
        for batch in batched(questions, eval_batch_size(settings)):
            contexts = runner.submit(retrieve_chunks, {"questions": batch, "retriever": index.retriever,
                                                       "reasoning": settings.reasoning, "optimize": settings.optimize})
            answers = runner.submit(answer_questions, {"questions": batch, "contexts": contexts, "reasoner": reasoner,
                                                       "limits": settings.llm.limits(), "store": answer_store})
            verdicts = runner.submit(judge_answers, {"questions": batch, "contexts": contexts, "answers": answers,
                                                     "judge": judge, "store": verdict_store})
            pending.append(runner.submit(collect_results, {"questions": batch, "contexts": contexts,
                                                           "answers": answers, "verdicts": verdicts}))
            if rank:
                ranking.append(runner.submit(rank_documents, {"questions": batch, "retriever": index.retriever}))
        results = [r for future in pending for r in future.result()]
        rankings = [r for future in ranking for r in future.result()]
    return Evaluated(reasoner, results, [answer_store, verdict_store], rankings)


def evaluate_and_log(settings: Settings, tracker: Tracker, questions: list[Question], embedder: Embedder,
                     index: ServingIndex, identity: str, started: float) -> tuple[FlowReport, GateReport]:
    """Answer and judge the questions, aggregate, run the safety suite and the gate, and log it all as one MLflow
    run; only then is the checkpoint dropped (a kill before that resumes from it)."""
    judge = build_judge(settings, embedder)
    evaluated = evaluate(settings, questions, embedder, index, judge, rank=True)
    results = evaluated.results
    summary = summarize_results(results, settings.reasoning.complex_calls(len(settings.prompts.paths)),
                                settings.optimize.alpha)
    safety = run_safety_suite(evaluated.reasoner, settings.llm.limits(), load_safety_cases(settings.safety))
    gate = check_regression(tracker, settings.gate, results, safety)
    quality = [score_rankings("eval", questions, evaluated.rankings)]
    report = log_eval_run(tracker, EvalRun(
        reasoner=evaluated.reasoner, judge_version=judge.version, index=index.manifest, summary=summary,
        quality=quality, results=results, gate=gate, safety=safety, duration_s=time.perf_counter() - started,
        identity=identity, llm=settings.llm, judge=settings.judge, retrieval=settings.retrieval,
        review=settings.review, questions_path=settings.questions.path, log_traces=settings.mlflow.log_traces))
    evaluated.finish()
    return report, gate


PARTIAL = "Partial"  # the state of a nightly eval that finished with unanswered questions


@flow(name="nightly-eval", validate_parameters=False)
def nightly_eval(settings: Settings | None = None) -> FlowReport | State:
    settings = settings or load_settings()
    started, tracker = time.perf_counter(), build_tracker(settings)
    questions = load_questions(settings.questions.path)
    embedder = build_embedder(settings)
    index = open_serving_index(settings, embedder)  # one version for the whole run
    identity = run_identity(settings.config_hash(), questions, index.manifest.content_hash)
    # a run of the same identity killed after it was logged (during its drift check) is finished, not repeated
    logged = interrupted_eval(tracker, identity)
    report, gate = logged or evaluate_and_log(settings, tracker, questions, embedder, index, identity, started)
    publish_summary(report)
    if settings.drift.enabled:  # before the gate: a failed run still gets its drift report; drift never fails the eval
        drift_state = drift(settings, run_id=report.run_id, return_state=True)
        if drift_state.is_failed():
            get_run_logger().warning("drift flow failed (%s); the eval run is logged", drift_state.message)
    tag_run(tracker, report.run_id, {FLOW_COMPLETE_TAG: "true"})
    failed_at = tracker.artifact_location(report.run_id, "eval/failed.json") if gate.missing else ""
    enforce_gate(gate, report.run_id, failed_at)  # after logging: a failed run is still inspectable in MLflow
    if failed := int(report.metrics["n_failed"]):
        return Completed(name=PARTIAL, data=report, message=f"{failed} of {int(report.metrics['n_questions'])} "
                         "questions unanswered after their retries (eval/failed.json); a re-run asks only those")
    return report
