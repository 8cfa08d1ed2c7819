"""DPO dataset build: feedback (files, and the ratings and corrections users gave on served answers, read from their
traces; validated, bad rows quarantined, too many fail the build before any write) ->
preference pairs (corrections, thumbs, and AI feedback: judge-scored samples of the reasoner) -> hygiene (PII,
lengths, duplicates, eval leakage, caps) -> seeded split -> TRL-format export under its content hash -> MLflow
(dataset input, lineage, counts) and a Prefect summary."""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run

from reasonloop.feedback.build import sampling_changes
from reasonloop.feedback.preferences import PreferencePair
from reasonloop.monitoring.runs import run_ids
from reasonloop.providers import build_embedder, build_judge, build_reasoner, build_tracker, open_serving_index
from reasonloop.retrieval.embeddings import Embedder
from reasonloop.schemas import FlowReport
from reasonloop.settings import Settings, load_settings
from tasks.live import read_live_traffic
from tasks.load import load_questions
from tasks.preferences import (
    clean_and_split,
    eval_question_sets,
    export_preferences,
    feedback_pairs,
    read_feedback,
    rlaif_pairs,
    trace_feedback,
)
from tasks.reason import answer_questions
from tasks.retrieve import retrieve_chunks
from tasks.track import log_dpo_build, publish_summary


def ai_feedback(settings: Settings, embedder: Embedder) -> list[PreferencePair]:
    """Every question of `preferences.rlaif.questions` answered `samples` times by the reasoner (self-consistency at
    the configured temperature, over the serving index), the samples scored by the judge."""
    cfg = settings.preferences.rlaif
    assert cfg.questions is not None  # the config requires it when enabled
    sampling = settings.updated(sampling_changes(cfg))
    questions = load_questions(cfg.questions)
    index = open_serving_index(settings, embedder)
    contexts = retrieve_chunks(questions, index.retriever, sampling.reasoning, sampling.optimize)
    answers = answer_questions(questions, contexts, build_reasoner(sampling, embedder, index), sampling.llm.limits())
    return rlaif_pairs(questions, contexts, answers, build_judge(settings, embedder), cfg.min_margin,
                       str(flow_run.id or "local"))


@flow(name="build-dpo", validate_parameters=False)
def build_dpo(settings: Settings | None = None) -> FlowReport:
    settings = settings or load_settings()
    cfg, tracker = settings.preferences, build_tracker(settings)
    traced = trace_feedback(read_live_traffic(tracker, settings.live, cfg.traces_window).records) \
        if cfg.from_traces else None
    loaded = read_feedback(cfg, run_ids(tracker) if cfg.known_runs_only else None, traced)
    embedder = build_embedder(settings)
    pairs = feedback_pairs(loaded, cfg)
    if cfg.rlaif.enabled:
        pairs += ai_feedback(settings, embedder)
    evals = eval_question_sets(settings.questions, settings.quality)
    dataset = clean_and_split(pairs, embedder, evals, cfg, loaded.records)
    folder, manifest = export_preferences(dataset, cfg)
    report = log_dpo_build(tracker, cfg, loaded, dataset, folder, manifest)
    publish_summary(report)
    return report
