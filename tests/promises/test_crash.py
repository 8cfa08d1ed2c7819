"""Crash and resume of the nightly eval: SIGKILLed at seeded random points until 10 runs were really killed
mid-way, then run again. The re-run completes, asks the model nothing it had already answered (counted at the
server), gives the same results as an uninterrupted run, and MLflow holds no duplicate and no orphaned run.

Each run is a real process forked from a warm one (tests/support/zygote.py), so a trial costs the run, not ~10 s
of imports.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from ..support.figures import record_figures
from ..support.openai_server import OpenAIServer
from ..support.servers import reasonloop_env
from ..support.trials import (
    FLOW_COMPLETE,
    TRIALS,
    answered_before,
    assert_no_duplicate_or_orphan,
    fastest_of_two,
    results_of,
    run,
    runs_of,
    trial_seeds,
)
from ..support.zygote import Zygote
from .test_faults import numbered_questions, question_of, scripted_answers

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]
N_QUESTIONS = 24


def test_a_killed_nightly_eval_resumes_without_asking_twice(zygote: Zygote, tiny_data: tuple[Path, Path],
                                                            tmp_path: Path) -> None:
    corpus, few = tiny_data
    questions = numbered_questions(few, N_QUESTIONS, tmp_path / "questions.jsonl")
    asked: list[str] = []
    answer = scripted_answers(questions)

    def responder(request: dict[str, Any]) -> Any:
        asked.append(question_of(request))
        reply = answer(request)
        reply.delay_s = 0.1  # answering is a good part of the run: kills land in it
        return reply

    with OpenAIServer(responder) as server:
        def env(state: Path) -> dict[str, str]:
            return reasonloop_env(state, corpus={"path": corpus}, questions={"path": questions},
                                  quality={"datasets": {"squad_sample": {"questions": few}}},
                                  safety={"enabled": False}, eval={"batch_size": 8},
                                  llm={"provider": "openai", "model": "scripted", "base_url": server.base_url,
                                       "max_concurrency": 2, "max_retries": 0})

        base = tmp_path / "base"  # one index, copied into every trial
        assert run(zygote, "reindex", env(base), tmp_path / "base.log") == 0
        full, reference_state = fastest_of_two(zygote, "eval", base, env, tmp_path)
        reference = results_of(reference_state, assert_no_duplicate_or_orphan(reference_state, "nightly-eval"),
                               tmp_path / "ref")
        assert len(reference) == N_QUESTIONS

        outcomes: list[tuple[float, int, int, int, bool]] = []
        for seed in trial_seeds(lambda: sum(o[1] == -signal.SIGKILL and not o[4] for o in outcomes)):
            state = tmp_path / f"trial{seed}"
            shutil.copytree(base, state)
            kill_after = random.Random(seed).uniform(0.05, 0.95) * full
            status = run(zygote, "eval", env(state), tmp_path / f"trial{seed}.log", kill_after)
            saved, before = answered_before(state), len(asked)
            completed = [r for r in runs_of(state, "nightly-eval") if r.data.tags.get(FLOW_COMPLETE) == "true"]
            assert run(zygote, "eval", env(state), tmp_path / f"trial{seed}-rerun.log") == 0
            again = set(asked[before:])
            assert not again & {q for q in again if _id(questions, q) in saved}, f"trial {seed}: asked again"
            if completed:  # the kill came after the flow was through: the re-run is the next nightly eval
                assert not again and len(runs_of(state, "nightly-eval")) == 2
                finished = next(r for r in runs_of(state, "nightly-eval") if r.info.run_id != completed[0].info.run_id)
            else:  # interrupted: the re-run resumed it, and one run stands for it
                finished = assert_no_duplicate_or_orphan(state, "nightly-eval")
            assert finished.data.tags[FLOW_COMPLETE] == "true"
            assert results_of(state, finished, tmp_path / f"r{seed}") == reference, f"trial {seed}"
            assert not [r for r in runs_of(state, "drift") if r.info.status == "RUNNING"]
            outcomes.append((round(kill_after, 2), status, len(saved), len(again), bool(completed)))
    record_figures("crash-eval-trials", {"uninterrupted_s": full, "trials": [dict(zip(
        ("kill_after_s", "status", "answers_saved", "asked_again", "flow_had_completed"), o, strict=True))
        for o in outcomes]})
    killed = [o for o in outcomes if o[1] == -signal.SIGKILL and not o[4]]
    assert len(killed) >= TRIALS, outcomes
    assert any(0 < saved < N_QUESTIONS for _, _, saved, _, _ in killed), outcomes  # some resumed mid-answering


def _id(questions: Path, text: str) -> str:
    return next(q["id"] for q in map(json.loads, questions.read_text().splitlines()) if q["question"] == text)


