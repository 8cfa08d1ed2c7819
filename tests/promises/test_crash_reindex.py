"""Crash and resume of the reindex: SIGKILLed at seeded random points until 10 runs were really killed mid-way,
then run again: the same index as an uninterrupted run, one version built, no orphaned MLflow run."""

from __future__ import annotations

import random
import shutil
import signal
from pathlib import Path

import mlflow
import pytest

from reasonloop.retrieval.index_versions import IndexStore

from ..support.figures import record_figures
from ..support.servers import reasonloop_env
from ..support.trials import (
    TRIALS,
    fastest_of_two,
    run,
    runs_of,
    trial_seeds,
)
from ..support.zygote import Zygote

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]


def test_a_killed_reindex_reruns_to_the_same_index(zygote: Zygote, tiny_data: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    corpus, questions = tiny_data

    def env(state: Path) -> dict[str, str]:
        return reasonloop_env(state, corpus={"path": corpus}, chroma={"upsert_batch_size": 4},
                              quality={"datasets": {"squad_sample": {"questions": questions}}})

    blank = tmp_path / "blank"  # a state folder whose MLflow database exists (creating one takes seconds)
    blank.mkdir()
    mlflow.MlflowClient(f"sqlite:///{blank / 'mlflow.db'}").search_experiments()
    full, reference_state = fastest_of_two(zygote, "reindex", blank, env, tmp_path)
    reference = IndexStore(reference_state, "reasonloop").require_current()
    outcomes: list[tuple[float, int, int]] = []
    for seed in trial_seeds(lambda: sum(o[1] == -signal.SIGKILL for o in outcomes)):
        state = tmp_path / f"trial{seed}"
        shutil.copytree(blank, state)
        kill_after = random.Random(100 + seed).uniform(0.05, 0.9) * full
        status = run(zygote, "reindex", env(state), tmp_path / f"trial{seed}.log", kill_after)
        assert run(zygote, "reindex", env(state), tmp_path / f"trial{seed}-rerun.log") == 0
        store = IndexStore(state, "reasonloop")
        served = store.require_current()
        assert served.content_hash == reference.content_hash and served.n_chunks == reference.n_chunks
        runs = runs_of(state, "reindex")
        finished = [r for r in runs if r.info.status == "FINISHED"]
        # the re-run's run always records the served version; the killed run's too when it got to log
        assert finished and all(r.data.params["index.content_hash"] == reference.content_hash for r in finished)
        assert sum(r.data.metrics["new_version"] for r in finished) <= 1  # one version built, never two
        assert all(r.info.status == "FAILED" and "reasonloop.orphaned" in r.data.tags
                   for r in runs if r.info.status != "FINISHED")
        outcomes.append((round(kill_after, 2), status, served.version))
    record_figures("crash-reindex-trials", {"uninterrupted_s": full, "trials": [dict(zip(
        ("kill_after_s", "status", "served_version"), o, strict=True)) for o in outcomes]})
    assert len([o for o in outcomes if o[1] == -signal.SIGKILL]) >= TRIALS, outcomes


