"""Reading runs back from MLflow: recent runs, a nightly eval's per-question results, the baseline the gate compares
against, review queues, lineage (which runs and prompt versions an answer came from), and the finished runs of a
window. Each function takes the tracker and returns plain data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reasonloop.errors import ReasonloopError
from reasonloop.evaluation.review import QUEUE_ARTIFACT
from reasonloop.monitoring.tracking import Tracker
from reasonloop.schemas import QuestionResult

if TYPE_CHECKING:
    import pandas as pd

FLOW_KINDS = ("reindex", "nightly-eval", "live-eval", "judge-calibration", "canary", "drift", "dpo-build")
ANSWER_RUN_KINDS = ("nightly-eval", "canary")  # the runs whose answers feedback can be about
RESULTS_ARTIFACT = "eval/results.jsonl"
BASELINE_TAG = "reasonloop.baseline_run_id"


def _experiment_ids(tracker: Tracker, kinds: tuple[str, ...]) -> list[str]:
    return [found for kind in kinds if (found := tracker.experiment_id(kind)) is not None]


def finished_runs(tracker: Tracker, experiment_id: str, limit: int, *, before: int | None = None,
                  until: int | None = None) -> list[Any]:
    """Finished runs of an experiment, newest first, started before (or until) a time in ms."""
    where = ["attributes.status = 'FINISHED'"]
    where += [f"attributes.start_time < {before}"] if before is not None else []
    where += [f"attributes.start_time <= {until}"] if until is not None else []
    return list(tracker.client().search_runs([experiment_id], " AND ".join(where), max_results=limit,
                                             order_by=["attributes.start_time DESC"]))


def baseline_run_id(tracker: Tracker) -> str | None:
    """The nightly eval's baseline run (an experiment tag), None when none is set."""
    experiment = tracker.client().get_experiment_by_name(tracker.experiment_name("nightly-eval"))
    return experiment.tags.get(BASELINE_TAG) if experiment is not None else None


def set_baseline(tracker: Tracker, run_id: str) -> None:
    """Make a finished nightly-eval run with per-question results the baseline the gate compares against."""
    client = tracker.client()
    try:
        run = client.get_run(run_id)
    except Exception:  # noqa: BLE001 - MLflow raises a generic MlflowException for an unknown run
        raise ReasonloopError(f"no run {run_id} in {tracker.uri}: see `reasonloop runs`") from None
    experiment = client.get_experiment_by_name(tracker.experiment_name("nightly-eval"))
    experiment_id = experiment.experiment_id if experiment is not None else None
    if experiment_id is None or run.info.experiment_id != experiment_id or run.info.status != "FINISHED":
        raise ReasonloopError(f"run {run_id} is not a finished nightly-eval run ({run.info.status}); pick one from "
                              "`reasonloop runs`")
    run_results(tracker, run_id)  # refuse a run whose results cannot be read back
    client.set_experiment_tag(experiment_id, BASELINE_TAG, run_id)


def run_results(tracker: Tracker, run_id: str) -> list[QuestionResult]:
    """A nightly-eval run's per-question results, read back from its `eval/results.jsonl` artifact."""
    client = tracker.client()
    try:
        path = Path(client.download_artifacts(run_id, RESULTS_ARTIFACT))
    except Exception as exc:  # noqa: BLE001 - MLflow raises several types for a missing run or file
        raise ReasonloopError(f"run {run_id} has no readable {RESULTS_ARTIFACT} ({type(exc).__name__}): is it a "
                              "nightly-eval run of this version?") from None
    return [QuestionResult.model_validate_json(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def recent_runs(tracker: Tracker, limit: int = 10, kinds: tuple[str, ...] = FLOW_KINDS,
                finished_only: bool = False) -> pd.DataFrame:
    """The newest runs of the given flow kinds with their status and key metrics, newest first."""
    import mlflow
    import pandas as pd

    ids = _experiment_ids(tracker, kinds)
    if not ids:
        return pd.DataFrame()
    tracker.activate()
    return mlflow.search_runs(experiment_ids=ids, max_results=limit, order_by=["attributes.start_time DESC"],
                              filter_string="attributes.status = 'FINISHED'" if finished_only else "")


def run_ids(tracker: Tracker, kinds: tuple[str, ...] = ANSWER_RUN_KINDS) -> set[str]:
    """Every run id of the given flow kinds in the MLflow store (feedback may only name these)."""
    ids = _experiment_ids(tracker, kinds)
    return {run.info.run_id for run in tracker.client().search_runs(ids, max_results=50000)} if ids else set()


def review_queue_of(tracker: Tracker, run_id: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """(run id, review rows) of a nightly-eval run, the newest one by default, read from its MLflow artifact."""
    if run_id is None:
        newest = recent_runs(tracker, 1, kinds=("nightly-eval",), finished_only=True)  # not one still running
        if newest.empty:
            raise ReasonloopError("no nightly eval run yet: run `reasonloop eval` first")
        run_id = str(newest.iloc[0]["run_id"])
    client = tracker.client()
    try:
        path = client.download_artifacts(run_id, QUEUE_ARTIFACT)
    except Exception as exc:  # noqa: BLE001 - MLflow raises several types for a missing run or file
        raise ReasonloopError(f"run {run_id} has no review queue ({QUEUE_ARTIFACT}): is it a nightly-eval run "
                              f"of this version? ({type(exc).__name__})") from None
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return run_id, [json.loads(line) for line in lines if line.strip()]


def runs_of_flow_run(tracker: Tracker, flow_run_id: str) -> list[tuple[str, str, str]]:
    """(flow kind, experiment id, run id) of the MLflow runs a Prefect flow run wrote (tag prefect.flow_run_id)."""
    ids = _experiment_ids(tracker, FLOW_KINDS)
    if not ids:
        return []
    found = tracker.client().search_runs(ids, filter_string=f"tags.`prefect.flow_run_id` = '{flow_run_id}'")
    return [(r.data.tags.get("reasonloop.flow", ""), r.info.experiment_id, r.info.run_id) for r in found]


def prompt_versions_of(tracker: Tracker, run_ids: list[str]) -> list[str]:
    """The prompt templates (`role=name@vN`) the given runs answered with, read from their `prompt.<role>` params;
    runs that cannot be read add nothing."""
    client, found = tracker.client(), set()
    for run_id in run_ids:
        try:
            params = client.get_run(run_id).data.params
        except Exception:  # noqa: BLE001 - MLflow raises a generic MlflowException for an unknown run
            continue
        found |= {f"{k.removeprefix('prompt.')}={v}" for k, v in params.items()
                  if k.startswith("prompt.") and k.count(".") == 1}
    return sorted(found)
