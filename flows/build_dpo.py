"""DPO dataset build: feedback (validated; bad rows quarantined, too many fail the build before any write) ->
preference pairs (corrections, thumbs) -> hygiene (PII, lengths, duplicates, eval leakage, caps) -> seeded split ->
TRL-format export under its content hash -> MLflow (dataset input, lineage, counts) and a Prefect summary."""

from __future__ import annotations

from prefect import flow

from reasonloop.providers import build_embedder
from reasonloop.schemas import FlowReport
from reasonloop.settings import Settings, load_settings
from reasonloop.tracking import run_ids
from tasks.preferences import clean_and_split, eval_question_sets, export_preferences, feedback_pairs, read_feedback
from tasks.track import log_dpo_build, publish_summary


@flow(name="build-dpo", validate_parameters=False)
def build_dpo(settings: Settings | None = None) -> FlowReport:
    settings = settings or load_settings()
    cfg = settings.preferences
    known = run_ids(settings, ("nightly-eval", "canary")) if cfg.known_runs_only else None
    loaded = read_feedback(cfg, known)
    embedder = build_embedder(settings)
    dataset = clean_and_split(feedback_pairs(loaded, cfg), embedder, eval_question_sets(settings), cfg)
    folder, manifest = export_preferences(dataset, cfg)
    report = log_dpo_build(settings, embedder, loaded, dataset, folder, manifest)
    publish_summary(report)
    return report
