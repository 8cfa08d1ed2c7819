"""DPO dataset build tasks: feedback in (validated, bad rows quarantined), preference pairs out (built, cleaned,
split, exported under their content hash)."""

from __future__ import annotations

import shutil
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from reasonloop.errors import EmptyInputError
from reasonloop.evaluation.judges import JudgeItem
from reasonloop.feedback.config import PreferencesConfig
from reasonloop.feedback.preferences import (
    PreferenceDataset,
    PreferencePair,
    build_dataset,
    export_dataset,
    pairs_from_corrections,
    pairs_from_scores,
    pairs_from_thumbs,
    vote_entropy,
)
from reasonloop.feedback.records import FEEDBACK_PATTERNS, FeedbackLoad, load_feedback
from reasonloop.providers import build_judge, build_reasoner, open_serving_index
from reasonloop.reasoning.config import SelfConsistencyConfig
from reasonloop.retrieval.embeddings import Embedder
from reasonloop.schemas import AnswerRecord
from reasonloop.settings import Settings
from tasks.feedback import screen_feedback
from tasks.load import load_questions
from tasks.reason import answer_questions
from tasks.retrieve import retrieve_chunks
from tasks.validate import check_bad_fraction


@task(name="load-feedback", cache_policy=NO_CACHE)
def read_feedback(cfg: PreferencesConfig, known_run_ids: set[str] | None) -> FeedbackLoad:
    """Every feedback file, row by row (pydantic) then as a table (great-expectations); fails, writing nothing,
    when more than `preferences.max_bad_fraction` of the rows were rejected."""
    assert cfg.feedback_dir is not None  # resolved by the settings
    if cfg.rlaif.enabled and not cfg.feedback_dir.exists():
        return FeedbackLoad(records=[], origins=[], rejects=[])  # AI feedback alone
    loaded = screen_feedback(load_feedback(cfg.feedback_dir, known_run_ids))
    if not loaded.records and not loaded.rejects and not cfg.rlaif.enabled:
        raise EmptyInputError(f"no feedback rows in {', '.join(FEEDBACK_PATTERNS)} files: add some with `reasonloop "
                              "feedback add`, or switch on preferences.rlaif", path=cfg.feedback_dir)
    if loaded.records or loaded.rejects or not cfg.rlaif.enabled:
        check_bad_fraction(len(loaded.records), loaded.rejects, cfg.max_bad_fraction, "preferences.max_bad_fraction",
                           "no dataset was built")
    return loaded


@task(name="build-pairs", cache_policy=NO_CACHE)
def feedback_pairs(loaded: FeedbackLoad, cfg: PreferencesConfig) -> list[PreferencePair]:
    """The pairs of each builder switched on in the config."""
    return [*(pairs_from_corrections(loaded.records) if cfg.corrections else []),
            *(pairs_from_thumbs(loaded.records) if cfg.thumbs else [])]


@task(name="rlaif-pairs", cache_policy=NO_CACHE)
def rlaif_pairs(settings: Settings, embedder: Embedder, run_id: str) -> list[PreferencePair]:
    """AI feedback: every question of `preferences.rlaif.questions` answered `samples` times by the reasoner
    (self-consistency at the configured temperature, over the serving index), each sample scored by the judge
    against the reference; best vs worst per question when the gap reaches `min_margin`. Each pair records the
    samples' vote entropy (how much they disagreed) and this build's run as its source."""
    cfg = settings.preferences.rlaif
    assert cfg.questions is not None  # the config requires it when enabled
    questions = load_questions.fn(cfg.questions)
    sampling = settings.model_copy(update={"reasoning": settings.reasoning.model_copy(update={
        "strategy": "self_consistency",
        "self_consistency": SelfConsistencyConfig(samples=cfg.samples, temperature=cfg.temperature)})})
    index = open_serving_index(settings, embedder)
    contexts = retrieve_chunks.fn(questions, index.retriever, sampling.reasoning, sampling.optimize)
    answers = answer_questions.fn(questions, contexts, build_reasoner(sampling, embedder, index),
                                  sampling.llm.limits())
    judge = build_judge(settings, embedder)
    items = [(q.question, JudgeItem(q, AnswerRecord(question_id=q.id, answer=sample), c))
             for q, c, a in zip(questions, contexts, answers, strict=True) for sample in a.samples if sample.strip()]
    verdicts = judge.judge([item for _, item in items])
    scored: dict[str, list[tuple[str, float]]] = {}
    for (prompt, item), verdict in zip(items, verdicts, strict=True):
        if verdict.judge_error is None:
            scored.setdefault(prompt, []).append((item.answer.answer, verdict.correctness))
    entropy = {q.question: vote_entropy(a.samples) for q, a in zip(questions, answers, strict=True)}
    templates = {q.question: a.prompt for q, a in zip(questions, answers, strict=True)}
    pairs = pairs_from_scores(scored, cfg.min_margin, {q.question: q.id for q in questions}, [run_id])
    return [p.model_copy(update={"meta": {**p.meta, "vote_entropy": round(entropy[p.prompt], 6),
                                          "judge": judge.version, "prompt": templates[p.prompt]}}) for p in pairs]


def eval_question_sets(settings: Settings) -> dict[str, list[str]]:
    """Every question set the evals use (the nightly set and the retrieval-quality sets): none may leak into
    training."""
    paths = {"questions": settings.questions.path,
             **{name: d.questions for name, d in settings.quality.datasets.items()}}
    return {name: [q.question for q in load_questions.fn(path)] for name, path in sorted(paths.items())}


@task(name="clean-and-split", cache_policy=NO_CACHE)
def clean_and_split(pairs: list[PreferencePair], embedder: Embedder, evals: dict[str, list[str]],
                    cfg: PreferencesConfig, loaded: FeedbackLoad) -> PreferenceDataset:
    return build_dataset(pairs, embedder, evals, cfg, loaded.records)


@task(name="export-dataset", cache_policy=NO_CACHE)
def export_preferences(dataset: PreferenceDataset, cfg: PreferencesConfig) -> tuple[Path, dict]:
    """The dataset written to `<out_dir>/<dataset sha256[:12]>` (staged, then renamed: an existing folder of the
    same hash holds the same bytes and is kept)."""
    assert cfg.out_dir is not None  # resolved by the settings
    staging = cfg.out_dir / ".staging"
    manifest = export_dataset(dataset, staging, cfg.conversational)
    final = cfg.out_dir / manifest["dataset_sha256"][:12]
    if final.exists():
        shutil.rmtree(staging)
    else:
        staging.rename(final)
    return final, manifest
