"""Preference pairs from feedback: corrections and thumbs from the feedback files, AI feedback from judge-scored
samples of the reasoner, the eval question sets the leakage guard keeps out, and the export under its hash."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from reasonloop.evaluation.config import QualityConfig, QuestionsConfig
from reasonloop.evaluation.judges import Judge, JudgeItem
from reasonloop.feedback.config import PreferencesConfig, RlaifConfig
from reasonloop.feedback.exports import export_dataset
from reasonloop.feedback.preferences import (
    PreferenceDataset,
    PreferencePair,
    pairs_from_corrections,
    pairs_from_scores,
    pairs_from_thumbs,
    vote_entropy,
)
from reasonloop.feedback.records import FeedbackLoad
from reasonloop.reasoning.config import SelfConsistencyConfig
from reasonloop.retrieval.record_sets import load_questions
from reasonloop.schemas import AnswerRecord, Question, RetrievedChunk


def feedback_pairs(loaded: FeedbackLoad, cfg: PreferencesConfig) -> list[PreferencePair]:
    """The pairs of each builder switched on in the config."""
    return [*(pairs_from_corrections(loaded.records) if cfg.corrections else []),
            *(pairs_from_thumbs(loaded.records) if cfg.thumbs else [])]


def sampling_changes(cfg: RlaifConfig) -> dict[str, dict[str, Any]]:
    """The reasoner's settings for AI feedback: self-consistency with `samples` answers at `temperature`."""
    return {"reasoning": {"strategy": "self_consistency",
                          "self_consistency": SelfConsistencyConfig(samples=cfg.samples, temperature=cfg.temperature)}}


def rlaif_pairs(questions: list[Question], contexts: list[list[RetrievedChunk]], answers: list[AnswerRecord],
                judge: Judge, min_margin: float, run_id: str) -> list[PreferencePair]:
    """AI feedback: each question's sampled answers (self-consistency's samples) scored by the judge against the
    reference; best vs worst per question when the gap reaches `min_margin`. Each pair records the samples' vote
    entropy (how much they disagreed), the judge, the template that sampled them and this build's run as its
    source."""
    items = [(q.question, JudgeItem(q, AnswerRecord(question_id=q.id, answer=sample), c))
             for q, c, a in zip(questions, contexts, answers, strict=True) for sample in a.samples if sample.strip()]
    verdicts = judge.judge([item for _, item in items])
    scored: dict[str, list[tuple[str, float]]] = {}
    for (prompt, item), verdict in zip(items, verdicts, strict=True):
        if verdict.judge_error is None:
            scored.setdefault(prompt, []).append((item.answer.answer, verdict.correctness))
    entropy = {q.question: vote_entropy(a.samples) for q, a in zip(questions, answers, strict=True)}
    templates = {q.question: a.prompt for q, a in zip(questions, answers, strict=True)}
    pairs = pairs_from_scores(scored, min_margin, {q.question: q.id for q in questions}, [run_id])
    return [p.model_copy(update={"meta": {**p.meta, "vote_entropy": round(entropy[p.prompt], 6),
                                          "judge": judge.version, "prompt": templates[p.prompt]}}) for p in pairs]


def eval_question_sets(questions: QuestionsConfig, quality: QualityConfig) -> dict[str, list[str]]:
    """Every question set the evals use (the nightly set and the retrieval-quality sets): none may leak into
    training."""
    paths = {"questions": questions.path, **{name: d.questions for name, d in quality.datasets.items()}}
    return {name: [q.question for q in load_questions(path)] for name, path in sorted(paths.items())}


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
