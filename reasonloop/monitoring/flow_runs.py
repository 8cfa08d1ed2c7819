"""One MLflow run per flow, written in one go: the reindex, a judge calibration, a canary and a DPO build (the nightly
eval's run is in eval_run.py, the drift run in drift_run.py). MLflow writers are not retried by their tasks: a retry
after start_run would leave a duplicate run, and MLflow's own HTTP client retries transient errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from reasonloop.evaluation.calibration import Agreement, floor_failures
from reasonloop.evaluation.canary import Arm, Candidate
from reasonloop.evaluation.config import JudgeConfig
from reasonloop.evaluation.gate import GateReport
from reasonloop.evaluation.judges import Judge
from reasonloop.evaluation.pairwise import PairOutcome, pairwise_metrics
from reasonloop.feedback.config import PreferencesConfig
from reasonloop.feedback.exports import trl_row
from reasonloop.feedback.preferences import PreferenceDataset
from reasonloop.feedback.records import FeedbackLoad
from reasonloop.monitoring.run_fields import (
    gate_metrics,
    index_params,
    numeric,
    quality_metrics,
    quarantine_table,
    retrieval_params,
    safety_metrics,
)
from reasonloop.monitoring.runs import prompt_versions_of
from reasonloop.monitoring.tracking import Tracker, run_tags
from reasonloop.paths import shown
from reasonloop.retrieval.config import CorpusConfig, RetrievalConfig
from reasonloop.retrieval.index_build import IndexBuild
from reasonloop.schemas import FlowReport, LabeledPair, RetrievalQuality, Verdict


def reindex_metrics(build: IndexBuild, n_quarantined: int, duration_s: float) -> dict[str, float]:
    plan = build.plan
    return {
        "n_seen": plan.n_added + plan.n_changed + plan.n_unchanged + n_quarantined,
        "n_added": plan.n_added, "n_changed": plan.n_changed, "n_removed": plan.n_removed,
        "n_skipped": plan.n_unchanged, "n_quarantined": n_quarantined,
        "n_files_read": plan.files_read, "n_files_skipped": plan.files_skipped,
        "n_documents": build.manifest.n_documents, "n_chunks": build.manifest.n_chunks,
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
        "documents": f"{build.manifest.n_documents} ({plan.n_added} added, {plan.n_changed} changed, "
                     f"{plan.n_removed} removed, {plan.n_unchanged} unchanged, {n_quarantined} quarantined)",
        "files": f"{plan.files_read} read, {plan.files_skipped} skipped unread (size and mtime, or bytes, unchanged)",
        "chunks": f"{build.manifest.n_chunks} ({build.embedded} embedded, {build.copied} carried over)",
        "embedding throughput": (f"{build.embedded / build.embed_seconds:.1f} chunks/s" if build.embed_seconds
                                 else "n/a"),
    }


# No Prefect retries on the MLflow writers: a retry after start_run would leave a duplicate run, and MLflow's
# own HTTP client already retries transient errors against a tracking server.
def log_reindex_run(tracker: Tracker, build: IndexBuild, quality: list[RetrievalQuality], duration_s: float,
                    corpus: CorpusConfig, retrieval: RetrievalConfig, title_prefix: bool,
                    *, context_tags: dict[str, str] | None = None) -> FlowReport:
    """Counts (seen/added/changed/removed/skipped/quarantined), the index version and hash, throughput, and the
    quarantine report as a table."""
    import mlflow

    experiment_id = tracker.ensure_experiment("reindex")
    rejects = build.rejects
    metrics = {**reindex_metrics(build, len(rejects), duration_s), **quality_metrics(quality),
               "n_injection_flagged": len(build.flagged)}
    tags = run_tags("reindex", context_tags)
    with mlflow.start_run(experiment_id=experiment_id, run_name="reindex", tags=tags) as run:
        mlflow.log_params({**tracker.params, **index_params(build.manifest),
                           **retrieval_params(retrieval), "corpus.path": shown(corpus.path),
                           "chunking.title_prefix": title_prefix})
        mlflow.log_metrics(metrics)
        if rejects:
            mlflow.log_table(quarantine_table(rejects), artifact_file="reindex/quarantine.json")
        if build.flagged:
            mlflow.log_dict({"injection_flagged": build.flagged}, "reindex/injection_flagged.json")
    return FlowReport(flow="reindex", run_id=run.info.run_id, experiment_id=experiment_id,
                      tracking_uri=tracker.uri, metrics=metrics,
                      rows={**reindex_rows(build, len(rejects)),
                            "injection suspects": f"{len(build.flagged)} ({corpus.injection})"})


def log_calibration_run(tracker: Tracker, judge: Judge, cfg: JudgeConfig, slices: list[Agreement],
                        pairs: list[LabeledPair], verdicts: list[Verdict],
                        *, context_tags: dict[str, str] | None = None) -> FlowReport:
    """One run per calibration in `<prefix>-judge-calibration`: the judge's version, model and identity, the data,
    agreement per slice (`<slice>.balanced_accuracy|cohen_kappa|auroc|n`), the floor check (`floor_passed`, tag
    `reasonloop.judge_floor`), and every pair's verdict as a table, so a judge's agreement with humans can be
    followed across models and prompt versions, and a judge drifting under its floor is visible."""
    import mlflow

    experiment_id = tracker.ensure_experiment("judge-calibration")
    failures = floor_failures(slices, cfg.calibration_floor)
    metrics = {f"{a.slice}.{k}": v for a in slices for k, v in numeric(a.model_dump()).items()}
    metrics["floor_passed"] = float(not failures)
    params = {**tracker.params, "judge.provider": cfg.provider,
              "judge.model": cfg.model, "judge.version": judge.version, "judge.identity": judge.identity,
              "data": ",".join(shown(p) for p in cfg.calibration_data), "n_pairs": len(pairs)}
    table = pd.DataFrame([{"id": p.id, "domain": p.domain, "label": p.label, "predicted": int(not v.hallucinated),
                           "grounded_fraction": v.grounded_fraction, "judge_error": v.judge_error or "",
                           "unsupported": " | ".join(v.unsupported_claims)} for p, v in zip(pairs, verdicts,
                                                                                           strict=True)])
    tags = {**run_tags("judge-calibration", context_tags), "judge.version": judge.version, "judge.model": cfg.model,
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
                      tracking_uri=tracker.uri, metrics=metrics,
                      rows={"judge": f"{judge.version} ({cfg.model})", **rows,
                            "floor": "below: " + "; ".join(failures) if failures else
                            f"passed {cfg.calibration_floor}"})


def log_canary_run(tracker: Tracker, candidate: Candidate, arms: dict[str, Arm], judge_version: str,
                   gate: GateReport, pairs: list[PairOutcome], pairs_version: str, promoted: str, seed: int,
                   *, context_tags: dict[str, str] | None = None) -> FlowReport:
    """One run per canary in `<prefix>-canary`: both arms' metrics (`production.*`, `candidate.*`), the paired gate
    of candidate vs production, the pairwise judge's win rates, the decision, and a side-by-side table."""
    import mlflow

    experiment_id = tracker.ensure_experiment("canary")
    production, challenger = arms["production"], arms["candidate"]
    metrics = {f"{name}.{k}": v for name, arm in arms.items()
               for k, v in {**numeric(arm.summary.model_dump()), **safety_metrics(arm.safety)}.items()}
    metrics |= {**gate_metrics(gate), **pairwise_metrics(pairs), "promoted": float(bool(promoted))}
    params = {**tracker.params, "candidate": candidate.spec, "candidate.kind": candidate.kind,
              "canary.slice": len(production.results), "canary.seed": seed,
              "judge.version": judge_version, "pairwise.version": pairs_version,
              **{f"{name}.llm.model": arm.model for name, arm in arms.items()},
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
    tags = {**run_tags("canary", context_tags), "reasonloop.canary": decision, "candidate": candidate.spec}
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
                      tracking_uri=tracker.uri, metrics=metrics,
                      rows={"candidate": f"{candidate.spec} ({candidate.kind})",
                            "questions": str(len(production.results)),
                            "accuracy production -> candidate": f"{accuracy(production)} -> {accuracy(challenger)}",
                            "pairwise (both orders)": f"candidate wins {metrics['pairwise.candidate_win_rate']:.0%}, "
                                                      f"production {metrics['pairwise.production_win_rate']:.0%}, "
                                                      f"ties {metrics['pairwise.tie_rate']:.0%}",
                            "gate": gate.summary(),
                            "decision": f"promoted: {promoted}" if promoted else "rejected: production unchanged"})


def tag_run(tracker: Tracker, run_id: str, tags: dict[str, str]) -> None:
    """Add tags to a finished run (a decision taken after it was logged)."""
    client = tracker.client()
    for key, value in tags.items():
        client.set_tag(run_id, key, value)


def log_dpo_build(tracker: Tracker, cfg: PreferencesConfig, loaded: FeedbackLoad, dataset: PreferenceDataset,
                  folder: Path, manifest: dict[str, Any], *,
                  context_tags: dict[str, str] | None = None) -> FlowReport:
    """One run per build in `<prefix>-dpo-build`: the config, counts per source and per hygiene step, the dataset
    as an MLflow dataset input (the training split, its content hash as digest) with the export folder as
    artifacts, the quarantined feedback rows, and the lineage (source runs of the answers)."""
    import mlflow

    report = dataset.report
    experiment_id = tracker.ensure_experiment("dpo-build")
    pairs = [*dataset.train, *dataset.test]
    runs = sorted({r for p in pairs for r in p.source_run_ids})
    traces = sorted({t for p in pairs for t in p.source_trace_ids})
    judges = sorted({str(p.meta["judge"]) for p in pairs if "judge" in p.meta})  # AI-feedback pairs' judge
    prompts = sorted({*prompt_versions_of(tracker, runs),
                      *(f"rlaif={p.meta['prompt']}" for p in pairs if p.meta.get("prompt"))})
    metrics = {"n_feedback": len(loaded.records), "n_feedback_rejected": len(loaded.rejects),
               "n_feedback_from_traces": sum(r.source_trace_id is not None for r in loaded.records),
               "n_pairs_built": report.n_in, "n_pairs_kept": report.n_out, "n_train": len(dataset.train),
               "n_test": len(dataset.test), "n_leaked": len(report.leaked), "n_redacted": report.redacted,
               "n_kto_rows": len(dataset.unpaired),
               **{f"removed.{step}": n for step, n in report.removed.items()},
               **{f"pairs_in.{s}": n for s, n in report.per_source_in.items()},
               **{f"pairs_out.{s}": n for s, n in report.per_source_out.items()}}
    params = {**tracker.params,
              **{f"preferences.{k}": v for k, v in cfg.model_dump(mode="json", exclude={"feedback_dir", "out_dir"})
                 .items()},
              "source_run_ids": ",".join(runs)[:6000] or "none", "dataset_sha256": manifest["dataset_sha256"],
              "source_trace_ids": ",".join(traces)[:6000] or "none",
              "judge.version": ",".join(judges) or "none (feedback pairs only)",
              "prompt_versions": ",".join(prompts)[:6000] or "unknown"}
    train = pd.DataFrame([trl_row(p, cfg.conversational) for p in dataset.train], columns=["prompt", "chosen",
                                                                                            "rejected"])
    tags = {**run_tags("dpo-build", context_tags), "dataset_sha256": manifest["dataset_sha256"]}
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
                      tracking_uri=tracker.uri, metrics=metrics,
                      rows={"feedback": f"{len(loaded.records)} rows ({len(loaded.rejects)} rejected)",
                            "pairs": f"{report.n_in} built, {report.n_out} kept ({removed or 'nothing removed'})",
                            "eval leakage": f"{len(report.leaked)} prompt(s) removed",
                            "split": f"{len(dataset.train)} train / {len(dataset.test)} test",
                            "dataset": str(folder), "sha256": manifest["dataset_sha256"]})
