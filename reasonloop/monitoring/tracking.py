"""MLflow plumbing: the tracking store from settings, one experiment per flow kind, and reading recent runs back."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reasonloop.errors import ReasonloopError
from reasonloop.schemas import QuestionResult
from reasonloop.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

FLOW_KINDS = ("reindex", "nightly-eval", "judge-calibration", "canary", "drift", "dpo-build")
RESULTS_ARTIFACT = "eval/results.jsonl"


def experiment_name(settings: Settings, kind: str) -> str:
    return f"{settings.mlflow.experiment_prefix}-{kind}"


def writer_tags() -> dict[str, str]:
    """Which process writes a run: a run left RUNNING by a process that is gone was cut short (`mark_orphans`)."""
    return {"reasonloop.host": socket.gethostname(), "reasonloop.pid": str(os.getpid())}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def writer_alive(tags: dict[str, str]) -> bool:
    """Whether the process that wrote a run (its `writer_tags`) may still be writing: alive on this host, or on
    another host (which cannot be checked from here)."""
    pid = tags.get("reasonloop.pid", "")
    return tags.get("reasonloop.host") != socket.gethostname() or not pid.isdigit() or _alive(int(pid))


def mark_orphans(settings: Settings, experiment_id: str) -> list[str]:
    """Runs of this experiment left RUNNING by a process on this host that no longer exists (killed while it was
    writing) are marked FAILED and tagged `reasonloop.orphaned`, so the store holds no run that looks in progress
    forever; returns their ids. Runs of other hosts are left alone: their writers cannot be checked from here."""
    import mlflow

    client, marked = mlflow.MlflowClient(settings.mlflow_tracking_uri), []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'"):
        if writer_alive(run.data.tags):
            continue
        pid = run.data.tags["reasonloop.pid"]
        client.set_tag(run.info.run_id, "reasonloop.orphaned", f"process {pid} ended before the run did")
        client.set_terminated(run.info.run_id, status="FAILED")
        marked.append(run.info.run_id)
    return marked


def ensure_experiment(settings: Settings, kind: str) -> str:
    """The experiment id for a flow kind, created on first use (artifacts under the state folder when local); runs
    that a killed writer left RUNNING are marked FAILED first."""
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    name = experiment_name(settings, kind)
    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        mark_orphans(settings, existing.experiment_id)
        return existing.experiment_id
    local = settings.mlflow_tracking_uri.startswith("sqlite:")
    location = (settings.mlflow_artifact_root / name).as_uri() if local else None
    return mlflow.create_experiment(name, artifact_location=location, tags={"reasonloop.flow": kind})


BASELINE_TAG = "reasonloop.baseline_run_id"


def baseline_run_id(settings: Settings) -> str | None:
    """The nightly eval's baseline run (an experiment tag), None when none is set."""
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    experiment = mlflow.get_experiment_by_name(experiment_name(settings, "nightly-eval"))
    return experiment.tags.get(BASELINE_TAG) if experiment is not None else None


def set_baseline(settings: Settings, run_id: str) -> None:
    """Make a finished nightly-eval run with per-question results the baseline the gate compares against."""
    import mlflow

    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    try:
        run = client.get_run(run_id)
    except Exception:  # noqa: BLE001 - MLflow raises a generic MlflowException for an unknown run
        raise ReasonloopError(f"no run {run_id} in {settings.mlflow_tracking_uri}: see `reasonloop runs`") from None
    experiment = client.get_experiment_by_name(experiment_name(settings, "nightly-eval"))
    experiment_id = experiment.experiment_id if experiment is not None else None
    if experiment_id is None or run.info.experiment_id != experiment_id or run.info.status != "FINISHED":
        raise ReasonloopError(f"run {run_id} is not a finished nightly-eval run ({run.info.status}); pick one from "
                              "`reasonloop runs`")
    run_results(settings, run_id)  # refuse a run whose results cannot be read back
    client.set_experiment_tag(experiment_id, BASELINE_TAG, run_id)


def run_results(settings: Settings, run_id: str) -> list[QuestionResult]:
    """A nightly-eval run's per-question results, read back from its `eval/results.jsonl` artifact."""
    import mlflow

    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    try:
        path = Path(client.download_artifacts(run_id, RESULTS_ARTIFACT))
    except Exception as exc:  # noqa: BLE001 - MLflow raises several types for a missing run or file
        raise ReasonloopError(f"run {run_id} has no readable {RESULTS_ARTIFACT} ({type(exc).__name__}): is it a "
                              "nightly-eval run of this version?") from None
    return [QuestionResult.model_validate_json(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def ui_command(settings: Settings, port: int = 5000) -> str:
    if not settings.mlflow_tracking_uri.startswith("sqlite:"):
        return f"open {settings.mlflow_tracking_uri}"
    return f"make ui   # or: mlflow ui --backend-store-uri {settings.mlflow_tracking_uri} --port {port}"


def run_url(settings: Settings, experiment_id: str, run_id: str, port: int = 5000) -> str:
    base = settings.mlflow_tracking_uri if settings.mlflow_tracking_uri.startswith("http") \
        else f"http://127.0.0.1:{port}"
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def recent_runs(settings: Settings, limit: int = 10, kinds: tuple[str, ...] = FLOW_KINDS,
                finished_only: bool = False) -> pd.DataFrame:
    """The newest runs of the given flow kinds with their status and key metrics, newest first."""
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    found = [mlflow.get_experiment_by_name(experiment_name(settings, k)) for k in kinds]
    ids = [e.experiment_id for e in found if e is not None]
    if not ids:
        return pd.DataFrame()
    return mlflow.search_runs(experiment_ids=ids, max_results=limit, order_by=["attributes.start_time DESC"],
                              filter_string="attributes.status = 'FINISHED'" if finished_only else "")


ANSWER_RUN_KINDS = ("nightly-eval", "canary")  # the runs whose answers feedback can be about


def run_ids(settings: Settings, kinds: tuple[str, ...] = ANSWER_RUN_KINDS) -> set[str]:
    """Every run id of the given flow kinds in the MLflow store (feedback may only name these)."""
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    found = [mlflow.get_experiment_by_name(experiment_name(settings, k)) for k in kinds]
    ids = [e.experiment_id for e in found if e is not None]
    if not ids:
        return set()
    return {run.info.run_id for run in mlflow.MlflowClient().search_runs(ids, max_results=50000)}


def review_queue_of(settings: Settings, run_id: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """(run id, review rows) of a nightly-eval run, the newest one by default, read from its MLflow artifact."""
    import json

    import mlflow

    from reasonloop.evaluation.review import QUEUE_ARTIFACT

    if run_id is None:
        newest = recent_runs(settings, 1, kinds=("nightly-eval",), finished_only=True)  # not one still running
        if newest.empty:
            raise ReasonloopError("no nightly eval run yet: run `reasonloop eval` first")
        run_id = str(newest.iloc[0]["run_id"])
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    try:
        path = client.download_artifacts(run_id, QUEUE_ARTIFACT)
    except Exception as exc:  # noqa: BLE001 - MLflow raises several types for a missing run or file
        raise ReasonloopError(f"run {run_id} has no review queue ({QUEUE_ARTIFACT}): is it a nightly-eval run "
                              f"of this version? ({type(exc).__name__})") from None
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return run_id, [json.loads(line) for line in lines if line.strip()]


def runs_of_flow_run(settings: Settings, flow_run_id: str) -> list[tuple[str, str, str]]:
    """(flow kind, experiment id, run id) of the MLflow runs a Prefect flow run wrote (tag prefect.flow_run_id)."""
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    ids = [e.experiment_id for k in FLOW_KINDS if (e := mlflow.get_experiment_by_name(experiment_name(settings, k)))]
    if not ids:
        return []
    found = mlflow.MlflowClient().search_runs(ids, filter_string=f"tags.`prefect.flow_run_id` = '{flow_run_id}'")
    return [(r.data.tags.get("reasonloop.flow", ""), r.info.experiment_id, r.info.run_id) for r in found]


def prompt_versions_of(settings: Settings, run_ids: list[str]) -> list[str]:
    """The prompt templates (`role=name@vN`) the given runs answered with, read from their `prompt.<role>` params;
    runs that cannot be read add nothing."""
    import mlflow

    client, found = mlflow.MlflowClient(settings.mlflow_tracking_uri), set()
    for run_id in run_ids:
        try:
            params = client.get_run(run_id).data.params
        except Exception:  # noqa: BLE001 - MLflow raises a generic MlflowException for an unknown run
            continue
        found |= {f"{k.removeprefix('prompt.')}={v}" for k, v in params.items()
                  if k.startswith("prompt.") and k.count(".") == 1}
    return sorted(found)
