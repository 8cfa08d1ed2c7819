"""DPO dataset build: feedback (validated; bad rows quarantined, too many fail the build before any write) ->
preference pairs (corrections, thumbs, and AI feedback: judge-scored samples of the reasoner) -> hygiene (PII,
lengths, duplicates, eval leakage, caps) -> seeded split -> TRL-format export under its content hash -> MLflow
(dataset input, lineage, counts) and a Prefect summary."""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run

from reasonloop.monitoring.tracking import run_ids
from reasonloop.providers import build_embedder
from reasonloop.schemas import FlowReport
from reasonloop.settings import Settings, load_settings
from tasks.preferences import (
    clean_and_split,
    eval_question_sets,
    export_preferences,
    feedback_pairs,
    read_feedback,
    rlaif_pairs,
)
from tasks.track import log_dpo_build, publish_summary


@flow(name="build-dpo", validate_parameters=False)
def build_dpo(settings: Settings | None = None) -> FlowReport:
    settings = settings or load_settings()
    cfg = settings.preferences
    known = run_ids(settings) if cfg.known_runs_only else None
    loaded = read_feedback(cfg, known)
    embedder = build_embedder(settings)
    pairs = feedback_pairs(loaded, cfg)
    if cfg.rlaif.enabled:
        pairs += rlaif_pairs(settings, embedder, str(flow_run.id or "local"))
    dataset = clean_and_split(pairs, embedder, eval_question_sets(settings), cfg, loaded)
    folder, manifest = export_preferences(dataset, cfg)
    report = log_dpo_build(settings, embedder, loaded, dataset, folder, manifest)
    publish_summary(report)
    return report
