"""DPO dataset build tasks: feedback in (validated, bad rows quarantined), preference pairs out (built, cleaned,
split, exported under their content hash)."""

from __future__ import annotations

import shutil
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from reasonloop.embeddings import Embedder
from reasonloop.feedback import FeedbackLoad, load_feedback
from reasonloop.preferences import (
    PreferenceDataset,
    PreferencePair,
    build_dataset,
    export_dataset,
    pairs_from_corrections,
    pairs_from_thumbs,
)
from reasonloop.settings import PreferencesConfig, Settings
from tasks.feedback import screen_feedback
from tasks.load import load_questions
from tasks.validate import check_bad_fraction


@task(name="load-feedback", cache_policy=NO_CACHE)
def read_feedback(cfg: PreferencesConfig, known_run_ids: set[str] | None) -> FeedbackLoad:
    """Every feedback file, row by row (pydantic) then as a table (great-expectations); fails, writing nothing,
    when more than `preferences.max_bad_fraction` of the rows were rejected."""
    assert cfg.feedback_dir is not None  # resolved by the settings
    loaded = screen_feedback(load_feedback(cfg.feedback_dir, known_run_ids))
    check_bad_fraction(len(loaded.records), loaded.rejects, cfg.max_bad_fraction, "preferences.max_bad_fraction",
                       "no dataset was built")
    return loaded


@task(name="build-pairs", cache_policy=NO_CACHE)
def feedback_pairs(loaded: FeedbackLoad, cfg: PreferencesConfig) -> list[PreferencePair]:
    """The pairs of each builder switched on in the config."""
    return [*(pairs_from_corrections(loaded.records) if cfg.corrections else []),
            *(pairs_from_thumbs(loaded.records) if cfg.thumbs else [])]


def eval_question_sets(settings: Settings) -> dict[str, list[str]]:
    """Every question set the evals use (the nightly set and the retrieval-quality sets): none may leak into
    training."""
    paths = {"questions": settings.questions.path,
             **{name: d.questions for name, d in settings.quality.datasets.items()}}
    return {name: [q.question for q in load_questions.fn(path)] for name, path in sorted(paths.items())}


@task(name="clean-and-split", cache_policy=NO_CACHE)
def clean_and_split(pairs: list[PreferencePair], embedder: Embedder, evals: dict[str, list[str]],
                    cfg: PreferencesConfig) -> PreferenceDataset:
    return build_dataset(pairs, embedder, evals, cfg)


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
