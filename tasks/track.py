"""Writing runs to MLflow (params, metrics in one batch, tables, artifacts) and the Prefect summary artifact."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from reasonloop.evaluation.canary import Candidate
from reasonloop.evaluation.gate import GateReport
from reasonloop.evaluation.judges import Judge
from reasonloop.evaluation.pairwise import PairOutcome, pairwise_metrics
from reasonloop.evaluation.review import QUEUE_ARTIFACT, review_queue
from reasonloop.feedback.preferences import PreferenceDataset, trl_row
from reasonloop.feedback.records import FeedbackLoad
from reasonloop.monitoring.report import close_figures, plots, render_html
from reasonloop.monitoring.tracking import ensure_experiment, git_commit, prompt_versions_of, writer_tags
from reasonloop.paths import project_root
from reasonloop.reasoning.prompt_registry import register_prompt
from reasonloop.reasoning.strategies import Reasoner
from reasonloop.reasoning.traces import log_question_traces
from reasonloop.redact import redact_url
from reasonloop.retrieval.embeddings import Embedder
from reasonloop.retrieval.index_versions import Manifest
from reasonloop.schemas import (
    EvalSummary,
    FlowReport,
    LabeledPair,
    LoadedCorpus,
    QuestionResult,
    Reject,
    RetrievalQuality,
    RetrievedChunk,
    Verdict,
)
from reasonloop.settings import Settings
from tasks.aggregate import interval_metrics, results_table, summary_rows
from tasks.calibrate import Agreement, floor_failures
from tasks.canary import Arm
from tasks.index import IndexBuild
from tasks.safety import SafetyReport


def common_params(settings: Settings, embedder: Embedder) -> dict[str, Any]:
    return {
        "config_hash": settings.config_hash(), "profile": settings.profile or "default",
        "git_commit": git_commit(project_root()), "embedding.model": embedder.name,
        "embedding.sha256": embedder.weights_sha256, "chroma.mode": settings.chroma.mode,
        "chroma.collection": settings.chroma.collection,
        "chunking.chunk_size": settings.chunking.chunk_size, "chunking.chunk_overlap": settings.chunking.chunk_overlap,
    }


def flow_run_tags(kind: str) -> dict[str, str]:
    from prefect.runtime import flow_run

    return {"reasonloop.flow": kind, "prefect.flow_run_id": str(flow_run.id or ""),
            "prefect.flow_run_name": str(flow_run.name or ""), **writer_tags()}


def _numeric(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def reindex_metrics(build: IndexBuild, n_quarantined: int, duration_s: float) -> dict[str, float]:
    plan = build.plan
    return {
        "n_seen": len(plan.added) + len(plan.changed) + len(plan.unchanged) + n_quarantined,
        "n_added": len(plan.added), "n_changed": len(plan.changed), "n_removed": len(plan.removed),
        "n_skipped": len(plan.unchanged), "n_quarantined": n_quarantined,
        "n_documents": len(build.manifest.documents), "n_chunks": build.manifest.n_chunks,
        "n_embedded": build.embedded, "n_copied": build.copied, "index_version": build.manifest.version,
        "new_version": float(build.built), "embed_seconds": build.embed_seconds,
        "chunks_per_second": build.embedded / build.embed_seconds if build.embed_seconds else 0.0,
        "duration_s": duration_s,
    }


def reindex_rows(build: IndexBuild, n_quarantined: int) -> dict[str, str]:
    plan = build.plan
    state = "new version" if build.built else "unchanged (no new version)"
    return {
        "index version": f"{build.manifest.ref} ({state})",
        "documents": f"{len(build.manifest.documents)} ({len(plan.added)} added, {len(plan.changed)} changed, "
                     f"{len(plan.removed)} removed, {len(plan.unchanged)} unchanged, {n_quarantined} quarantined)",
        "chunks": f"{build.manifest.n_chunks} ({build.embedded} embedded, {build.copied} carried over)",
        "embedding throughput": (f"{build.embedded / build.embed_seconds:.1f} chunks/s" if build.embed_seconds
                                 else "n/a"),
    }


def quality_metrics(reports: list[RetrievalQuality]) -> dict[str, float]:
    """Retrieval metrics per labeled dataset, named `retrieval.<dataset>.<metric>`."""
    return {f"retrieval.{k}": v for report in reports for k, v in report.metrics().items()}


def retrieval_params(settings: Settings) -> dict[str, Any]:
    r = settings.retrieval
    return {"retrieval.mode": r.mode, "retrieval.top_k": r.top_k, "retrieval.candidates": r.candidates,
            "retrieval.fusion": r.fusion, "retrieval.rrf_k": r.rrf_k, "retrieval.dense_weight": r.dense_weight,
            "retrieval.bm25_weight": r.bm25_weight, "retrieval.bm25": r.bm25.model_dump_json()}


def index_params(manifest: Manifest) -> dict[str, Any]:
    return {"index.version": manifest.version, "index.content_hash": manifest.content_hash,
            "index.collection": manifest.collection}


# No Prefect retries on the MLflow writers: a retry after start_run would leave a duplicate run, and MLflow's
# own HTTP client already retries transient errors against a tracking server.
@task(name="log-reindex-run", cache_policy=NO_CACHE)
def log_reindex_run(settings: Settings, embedder: Embedder, build: IndexBuild, screened: LoadedCorpus,
                    quality: list[RetrievalQuality], duration_s: float) -> FlowReport:
    """Counts (seen/added/changed/removed/skipped/quarantined), the index version and hash, throughput, and the
    quarantine report as a table."""
    import mlflow

    experiment_id = ensure_experiment(settings, "reindex")
    rejects = screened.rejects
    metrics = {**reindex_metrics(build, len(rejects), duration_s), **quality_metrics(quality),
               "n_injection_flagged": len(screened.flagged)}
    with mlflow.start_run(experiment_id=experiment_id, run_name="reindex", tags=flow_run_tags("reindex")) as run:
        corpus_path = settings.public_dict()["corpus"]["path"]
        mlflow.log_params({**common_params(settings, embedder), **index_params(build.manifest),
                           **retrieval_params(settings), "corpus.path": corpus_path,
                           "chunking.title_prefix": settings.chunking.title_prefix})
        mlflow.log_metrics(metrics)
        if rejects:
            mlflow.log_table(quarantine_table(rejects), artifact_file="reindex/quarantine.json")
        if screened.flagged:
            mlflow.log_dict({"injection_flagged": screened.flagged}, "reindex/injection_flagged.json")
    return FlowReport(flow="reindex", run_id=run.info.run_id, experiment_id=experiment_id,
                      tracking_uri=settings.mlflow_tracking_uri, metrics=metrics,
                      rows={**reindex_rows(build, len(rejects)),
                            "injection suspects": f"{len(screened.flagged)} ({settings.corpus.injection})"})


def quarantine_table(rejects: list[Reject]) -> pd.DataFrame:
    return pd.DataFrame([{"file": r.source, "line": r.line, "reason": r.reason} for r in rejects],
                        columns=["file", "line", "reason"])


@task(name="publish-quarantine", cache_policy=NO_CACHE)
def publish_quarantine(rejects: list[Reject]) -> None:
    """The quarantine report as a Prefect table artifact (empty when nothing was refused)."""
    create_table_artifact(key="reindex-quarantine", description="inputs refused by the last reindex",
                          table=quarantine_table(rejects).astype(str).to_dict(orient="records"))


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
    return {**params, "prompt.paths": ",".join(p.ref for p in reasoner.paths),
            "reasoning.strategy": cfg.strategy, "reasoning.routes": json.dumps(cfg.routes, sort_keys=True),
            "reasoning.thresholds": f"simple<{cfg.simple_below}, complex>={cfg.complex_from}",
            "reasoning.self_consistency": cfg.self_consistency.model_dump_json(),
            "reasoning.react": cfg.react.model_dump_json(), "optimize": reasoner.optimize.model_dump_json()}


def gate_metrics(gate: GateReport) -> dict[str, float]:
    """`gate.passed` and, per checked metric, how much worse it got and the interval of the change."""
    values: dict[str, float] = {"gate.passed": float(gate.passed)}
    for check in gate.checks:
        values |= {f"gate.{check.metric}.{k}": v for k, v in
                   (("worse_by", check.worse_by), ("ci_low", check.ci_low), ("ci_high", check.ci_high),
                    ("n_pairs", check.n_pairs), ("regressed", float(check.regressed))) if v is not None}
    return values


def safety_metrics(safety: SafetyReport | None) -> dict[str, float]:
    if safety is None:
        return {}
    return {"safety_pass_rate": safety.pass_rate,
            **{f"safety.{kind}_pass_rate": rate for kind, rate in safety.pass_rate_by_kind.items()}}


IDENTITY_TAG = "reasonloop.run_identity"  # settings, question set and index version: what a checkpoint belongs to
FLOW_COMPLETE_TAG = "reasonloop.flow_complete"


@task(name="find-interrupted-eval", cache_policy=NO_CACHE)
def interrupted_eval(settings: Settings, identity: str) -> tuple[FlowReport, GateReport] | None:
    """A nightly-eval run of this identity that was logged in full but whose flow was killed before it ended (its
    drift check had not run) by a process that is gone: its report and gate, so the re-run finishes that run
    instead of logging a duplicate. None when there is none."""
    import mlflow

    from reasonloop.monitoring.tracking import experiment_name, writer_alive

    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name(settings, "nightly-eval"))  # looks, creates nothing
    if experiment is None:
        return None
    experiment_id = experiment.experiment_id
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
                        tracking_uri=settings.mlflow_tracking_uri, metrics=run.data.metrics,
                        rows={**summary_rows(summary), "resumed": "this run was logged before its flow was "
                              "interrupted; the re-run finished it"})
    return report, gate


@task(name="log-eval-run", cache_policy=NO_CACHE)
def log_eval_run(settings: Settings, embedder: Embedder, reasoner: Reasoner, judge_version: str,
                 index: Manifest, summary: EvalSummary, quality: list[RetrievalQuality],
                 results: list[QuestionResult], gate: GateReport, safety: SafetyReport | None,
                 duration_s: float, identity: str = "") -> FlowReport:
    """One MLflow run: params (providers, prompt name@version, retriever, config hash, commit), metrics with
    their intervals and the gate's decision in one batch, the per-question table, the full per-question records,
    the gate report and regressed questions, and the prompts linked from the registry."""
    import mlflow

    experiment_id = ensure_experiment(settings, "nightly-eval")
    registered = {p.ref: register_prompt(p) for p in reasoner.templates()}
    queue = review_queue(results, settings.review)
    metrics = {**_numeric(summary.model_dump()), **interval_metrics(summary), **quality_metrics(quality),
               **gate_metrics(gate), **safety_metrics(safety), "duration_s": duration_s, "n_review": len(queue)}
    params = {
        **common_params(settings, embedder), **index_params(index),
        "llm.provider": settings.llm.provider, "llm.model": settings.llm.model,
        "llm.base_url": redact_url(settings.llm.base_url), "llm.temperature": settings.llm.temperature,
        "judge.provider": settings.judge.provider, "judge.model": settings.judge.model, "judge.version": judge_version,
        **reasoning_params(reasoner, registered),
        **retrieval_params(settings), "questions.path": settings.public_dict()["questions"]["path"],
        "questions.count": len(results), "gate.baseline_run_id": gate.baseline_run_id or "none",
    }
    failed = [{"question_id": r.question.id, "question": r.question.question, "error": r.answer.error,
               "attempts": sum(step.attempts for step in r.answer.steps if step.kind == "llm")}
              for r in results if r.answer.error is not None]
    tags = {**flow_run_tags("nightly-eval"), "reasonloop.gate": "passed" if gate.passed else "failed",
            "reasonloop.status": "partial" if failed else "complete", IDENTITY_TAG: identity,
            FLOW_COMPLETE_TAG: "false"}  # true once the flow is through (its drift check ran)
    with mlflow.start_run(experiment_id=experiment_id, run_name="nightly-eval", tags=tags) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.log_table(results_table(results), artifact_file="eval/questions.json")
        if queue:
            mlflow.log_table(pd.DataFrame(queue).assign(reasons=lambda f: f["reasons"].str.join(" | ")),
                             artifact_file="eval/review.json")
        mlflow.log_dict(gate.model_dump(exclude={"regressions"}), "eval/gate.json")
        if failed:
            mlflow.log_dict(failed, "eval/failed.json")
        if safety is not None:
            mlflow.log_dict(safety.model_dump(), "eval/safety.json")
        figures = plots(results)
        for name, figure in figures.items():
            mlflow.log_figure(figure, f"eval/plots/{name}.png")
        mlflow.log_text(render_html(summary, gate, judge_version, figures), "eval/report.html")
        close_figures(figures)
        if gate.regressions:
            mlflow.log_table(pd.DataFrame([r.model_dump() for r in gate.regressions]),
                             artifact_file="eval/regressions.json")
        with tempfile.TemporaryDirectory() as tmp:
            records = Path(tmp) / "results.jsonl"
            records.write_text("".join(r.model_dump_json() + "\n" for r in results), encoding="utf-8")
            (Path(tmp) / "traces.jsonl").write_text("".join(json.dumps(trace(r)) + "\n" for r in results),
                                                    encoding="utf-8")
            (Path(tmp) / Path(QUEUE_ARTIFACT).name).write_text("".join(json.dumps(row) + "\n" for row in queue),
                                                                encoding="utf-8")
            (Path(tmp) / "summary.json").write_text(json.dumps(summary.model_dump(), indent=2), encoding="utf-8")
            mlflow.log_artifacts(tmp, artifact_path="eval")
        for version in registered.values():
            mlflow.MlflowClient().link_prompt_version_to_run(run.info.run_id, version)
        if settings.mlflow.log_traces:
            log_question_traces(results, experiment_id, run.info.run_id)
    return FlowReport(flow="nightly-eval", run_id=run.info.run_id, experiment_id=experiment_id,
                      tracking_uri=settings.mlflow_tracking_uri, metrics=metrics,
                      rows={**summary_rows(summary), "for human review": f"{len(queue)} (reasonloop review list)",
                            **({"safety suite": f"{safety.pass_rate:.1%} of {safety.n} attacks withstood"}
                               if safety else {}),
                            "regression gate": gate.summary(), "index version": index.ref})


@task(name="log-calibration-run", cache_policy=NO_CACHE)
def log_calibration_run(settings: Settings, embedder: Embedder, judge: Judge, slices: list[Agreement],
                        pairs: list[LabeledPair], verdicts: list[Verdict]) -> FlowReport:
    """One run per calibration in `<prefix>-judge-calibration`: the judge's version, model and identity, the data,
    agreement per slice (`<slice>.balanced_accuracy|cohen_kappa|auroc|n`), the floor check (`floor_passed`, tag
    `reasonloop.judge_floor`), and every pair's verdict as a table, so a judge's agreement with humans can be
    followed across models and prompt versions, and a judge drifting under its floor is visible."""
    import mlflow

    experiment_id = ensure_experiment(settings, "judge-calibration")
    failures = floor_failures(slices, settings.judge.calibration_floor)
    metrics = {f"{a.slice}.{k}": v for a in slices for k, v in _numeric(a.model_dump()).items()}
    metrics["floor_passed"] = float(not failures)
    params = {**common_params(settings, embedder), "judge.provider": settings.judge.provider,
              "judge.model": settings.judge.model, "judge.version": judge.version, "judge.identity": judge.identity,
              "data": ",".join(settings.public_dict()["judge"]["calibration_data"]), "n_pairs": len(pairs)}
    table = pd.DataFrame([{"id": p.id, "domain": p.domain, "label": p.label, "predicted": int(not v.hallucinated),
                           "grounded_fraction": v.grounded_fraction, "judge_error": v.judge_error or "",
                           "unsupported": " | ".join(v.unsupported_claims)} for p, v in zip(pairs, verdicts,
                                                                                           strict=True)])
    tags = {**flow_run_tags("judge-calibration"), "judge.version": judge.version, "judge.model": settings.judge.model,
            "reasonloop.judge_floor": "below: " + "; ".join(failures) if failures else "passed"}
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"calibrate {judge.version}", tags=tags) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.log_table(table, artifact_file="calibration/pairs.json")

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    rows = {a.slice: f"balanced accuracy {fmt(a.balanced_accuracy)}, kappa {fmt(a.cohen_kappa)}, AUROC "
                     f"{fmt(a.auroc)} ({a.n} pairs, {a.n_judge_errors} judge errors)" for a in slices}
    return FlowReport(flow="judge-calibration", run_id=run.info.run_id, experiment_id=experiment_id,
                      tracking_uri=settings.mlflow_tracking_uri, metrics=metrics,
                      rows={"judge": f"{judge.version} ({settings.judge.model})", **rows,
                            "floor": "below: " + "; ".join(failures) if failures else
                            f"passed {settings.judge.calibration_floor}"})


def summary_markdown(report: FlowReport) -> str:
    lines = [f"# {report.flow}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report.rows.items()]
    lines += ["", f"MLflow run `{report.run_id}` (experiment {report.experiment_id})"]
    return "\n".join(lines)


@task(name="publish-summary")
def publish_summary(report: FlowReport) -> str:
    """The flow's Prefect markdown artifact, under a stable key per flow kind."""
    return str(create_markdown_artifact(markdown=summary_markdown(report), key=f"{report.flow}-summary",
                                        description=f"{report.flow} summary"))


@task(name="log-canary-run", cache_policy=NO_CACHE)
def log_canary_run(settings: Settings, embedder: Embedder, candidate: Candidate, arms: dict[str, Arm],
                   judge_version: str, gate: GateReport, pairs: list[PairOutcome], pairs_version: str,
                   promoted: str) -> FlowReport:
    """One run per canary in `<prefix>-canary`: both arms' metrics (`production.*`, `candidate.*`), the paired gate
    of candidate vs production, the pairwise judge's win rates, the decision, and a side-by-side table."""
    import mlflow

    experiment_id = ensure_experiment(settings, "canary")
    production, challenger = arms["production"], arms["candidate"]
    metrics = {f"{name}.{k}": v for name, arm in arms.items()
               for k, v in {**_numeric(arm.summary.model_dump()), **safety_metrics(arm.safety)}.items()}
    metrics |= {**gate_metrics(gate), **pairwise_metrics(pairs), "promoted": float(bool(promoted))}
    params = {**common_params(settings, embedder), "candidate": candidate.spec, "candidate.kind": candidate.kind,
              "canary.slice": len(production.results), "canary.seed": settings.canary.seed,
              "judge.version": judge_version, "pairwise.version": pairs_version,
              **{f"{name}.llm.model": arm.settings.llm.model for name, arm in arms.items()},
              **{f"{name}.prompt.{role}": p.ref for name, arm in arms.items()
                 for role, p in arm.reasoner.prompts.items()}}
    side_by_side = pd.DataFrame([
        {"question_id": p.question.id, "question": p.question.question, "reference": p.question.reference,
         "production": p.answer.answer, "candidate": c.answer.answer,
         "production_correct": p.verdict.correct if p.verdict else None,
         "candidate_correct": c.verdict.correct if c.verdict else None,
         "pairwise_winner": o.winner, "pairwise_consistent": o.consistent}
        for p, c, o in zip(production.results, challenger.results, pairs, strict=True)])
    decision = "promoted" if promoted else "rejected"
    tags = {**flow_run_tags("canary"), "reasonloop.canary": decision, "candidate": candidate.spec}
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"canary {candidate.spec}", tags=tags) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.log_table(side_by_side, artifact_file="canary/questions.json")
        mlflow.log_dict(gate.model_dump(exclude={"regressions"}), "canary/gate.json")
        if gate.regressions:
            mlflow.log_table(pd.DataFrame([r.model_dump() for r in gate.regressions]),
                             artifact_file="canary/regressions.json")

    def accuracy(arm: Arm) -> str:
        return "n/a" if arm.summary.accuracy is None else f"{arm.summary.accuracy:.3f}"

    return FlowReport(flow="canary", run_id=run.info.run_id, experiment_id=experiment_id,
                      tracking_uri=settings.mlflow_tracking_uri, metrics=metrics,
                      rows={"candidate": f"{candidate.spec} ({candidate.kind})",
                            "questions": str(len(production.results)),
                            "accuracy production -> candidate": f"{accuracy(production)} -> {accuracy(challenger)}",
                            "pairwise (both orders)": f"candidate wins {metrics['pairwise.candidate_win_rate']:.0%}, "
                                                      f"production {metrics['pairwise.production_win_rate']:.0%}, "
                                                      f"ties {metrics['pairwise.tie_rate']:.0%}",
                            "gate": gate.summary(),
                            "decision": f"promoted: {promoted}" if promoted else "rejected: production unchanged"})


@task(name="tag-run", cache_policy=NO_CACHE)
def tag_run(settings: Settings, run_id: str, tags: dict[str, str]) -> None:
    """Add tags to a finished run (a decision taken after it was logged)."""
    import mlflow

    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    for key, value in tags.items():
        client.set_tag(run_id, key, value)


@task(name="log-dpo-build", cache_policy=NO_CACHE)
def log_dpo_build(settings: Settings, embedder: Embedder, loaded: FeedbackLoad, dataset: PreferenceDataset,
                  folder: Path, manifest: dict[str, Any]) -> FlowReport:
    """One run per build in `<prefix>-dpo-build`: the config, counts per source and per hygiene step, the dataset
    as an MLflow dataset input (the training split, its content hash as digest) with the export folder as
    artifacts, the quarantined feedback rows, and the lineage (source runs of the answers)."""
    import mlflow

    cfg, report = settings.preferences, dataset.report
    experiment_id = ensure_experiment(settings, "dpo-build")
    pairs = [*dataset.train, *dataset.test]
    runs = sorted({r for p in pairs for r in p.source_run_ids})
    judges = sorted({str(p.meta["judge"]) for p in pairs if "judge" in p.meta})  # AI-feedback pairs' judge
    prompts = sorted({*prompt_versions_of(settings, runs),
                      *(f"rlaif={p.meta['prompt']}" for p in pairs if p.meta.get("prompt"))})
    metrics = {"n_feedback": len(loaded.records), "n_feedback_rejected": len(loaded.rejects),
               "n_pairs_built": report.n_in, "n_pairs_kept": report.n_out, "n_train": len(dataset.train),
               "n_test": len(dataset.test), "n_leaked": len(report.leaked), "n_redacted": report.redacted,
               "n_kto_rows": len(dataset.unpaired),
               **{f"removed.{step}": n for step, n in report.removed.items()},
               **{f"pairs_in.{s}": n for s, n in report.per_source_in.items()},
               **{f"pairs_out.{s}": n for s, n in report.per_source_out.items()}}
    params = {**common_params(settings, embedder),
              **{f"preferences.{k}": v for k, v in cfg.model_dump(mode="json", exclude={"feedback_dir", "out_dir"})
                 .items()},
              "source_run_ids": ",".join(runs)[:6000] or "none", "dataset_sha256": manifest["dataset_sha256"],
              "judge.version": ",".join(judges) or "none (feedback pairs only)",
              "prompt_versions": ",".join(prompts)[:6000] or "unknown"}
    train = pd.DataFrame([trl_row(p, cfg.conversational) for p in dataset.train], columns=["prompt", "chosen",
                                                                                            "rejected"])
    tags = {**flow_run_tags("dpo-build"), "dataset_sha256": manifest["dataset_sha256"]}
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"dpo {manifest['dataset_sha256'][:12]}",
                          tags=tags) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        source = mlflow.data.from_pandas(train, source=str(folder / "train.jsonl"),
                                         name=f"dpo-{manifest['dataset_sha256'][:12]}")
        mlflow.log_input(source, context="training")
        mlflow.log_artifacts(str(folder), artifact_path="dataset")
        if loaded.rejects:
            mlflow.log_table(quarantine_table(loaded.rejects), artifact_file="feedback/rejected.json")
    removed = ", ".join(f"{step} {n}" for step, n in report.removed.items() if n)
    return FlowReport(flow="dpo-build", run_id=run.info.run_id, experiment_id=experiment_id,
                      tracking_uri=settings.mlflow_tracking_uri, metrics=metrics,
                      rows={"feedback": f"{len(loaded.records)} rows ({len(loaded.rejects)} rejected)",
                            "pairs": f"{report.n_in} built, {report.n_out} kept ({removed or 'nothing removed'})",
                            "eval leakage": f"{len(report.leaked)} prompt(s) removed",
                            "split": f"{len(dataset.train)} train / {len(dataset.test)} test",
                            "dataset": str(folder), "sha256": manifest["dataset_sha256"]})
