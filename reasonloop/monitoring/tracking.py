"""MLflow plumbing: the tracker (a tracking store, one experiment per flow kind) and who is writing a run.

The factory (`reasonloop.providers.build_tracker`) builds the tracker from settings; everything that reads or writes
runs takes it, never the settings.
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient


@dataclass(frozen=True)
class Tracker:
    """An MLflow tracking store and what every run written to it records.

    `artifact_root` holds the artifacts of a local (SQLite) store; a tracking server keeps its own. `params` are the
    parameters every run of this configuration logs (config hash, profile, git commit, embedding model, ...)."""
    uri: str
    experiment_prefix: str
    artifact_root: Path
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def local(self) -> bool:
        return self.uri.startswith("sqlite:")

    def activate(self) -> None:
        """Point MLflow's fluent API (`mlflow.start_run`, the prompt registry) at this store."""
        import mlflow

        mlflow.set_tracking_uri(self.uri)

    def client(self) -> MlflowClient:
        import mlflow

        return mlflow.MlflowClient(self.uri)

    def experiment_name(self, kind: str) -> str:
        return f"{self.experiment_prefix}-{kind}"

    def experiment_id(self, kind: str) -> str | None:
        """The experiment of a flow kind, None when no run of that kind was logged yet (looks, creates nothing)."""
        found = self.client().get_experiment_by_name(self.experiment_name(kind))
        return found.experiment_id if found is not None else None

    def ensure_experiment(self, kind: str) -> str:
        """The experiment id for a flow kind, created on first use (artifacts under the state folder when local); runs
        that a killed writer left RUNNING are marked FAILED first."""
        import mlflow

        self.activate()
        name = self.experiment_name(kind)
        existing = mlflow.get_experiment_by_name(name)
        if existing is not None:
            mark_orphans(self, existing.experiment_id)
            return existing.experiment_id
        location = (self.artifact_root / name).as_uri() if self.local else None
        return mlflow.create_experiment(name, artifact_location=location, tags={"reasonloop.flow": kind})

    def artifact_location(self, run_id: str, path: str) -> str:
        """Where a run's artifact is: a file path for a local store, else its URI on the tracking server."""
        from urllib.parse import unquote, urlsplit

        uri = f"{self.client().get_run(run_id).info.artifact_uri.rstrip('/')}/{path}"
        return unquote(urlsplit(uri).path) if uri.startswith("file:") else uri

    def run_url(self, experiment_id: str, run_id: str, port: int = 5000) -> str:
        base = self.uri if self.uri.startswith("http") else f"http://127.0.0.1:{port}"
        return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"

    def ui_command(self, port: int = 5000) -> str:
        if not self.local:
            return f"open {self.uri}"
        return f"make ui   # or: mlflow ui --backend-store-uri {self.uri} --port {port}"


def writer_tags() -> dict[str, str]:
    """Which process writes a run: a run left RUNNING by a process that is gone was cut short (`mark_orphans`)."""
    return {"reasonloop.host": socket.gethostname(), "reasonloop.pid": str(os.getpid())}


def run_tags(kind: str, context: dict[str, str] | None = None) -> dict[str, str]:
    """The tags of every run: its flow kind, the orchestrator's context (a Prefect flow run's id and name) and its
    writer."""
    return {"reasonloop.flow": kind, **(context or {}), **writer_tags()}


def process_alive(pid: int) -> bool:
    """Is this process on this host still running (a zombie counts as gone)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    try:  # a zombie (exited, not yet reaped: containers often run no reaper) is gone
        return Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def writer_alive(tags: dict[str, str]) -> bool:
    """Whether the process that wrote a run (its `writer_tags`) may still be writing: alive on this host, or on
    another host (which cannot be checked from here)."""
    pid = tags.get("reasonloop.pid", "")
    return tags.get("reasonloop.host") != socket.gethostname() or not pid.isdigit() or process_alive(int(pid))


def mark_orphans(tracker: Tracker, experiment_id: str) -> list[str]:
    """Runs of this experiment left RUNNING by a process on this host that no longer exists (killed while it was
    writing) are marked FAILED and tagged `reasonloop.orphaned`, so the store holds no run that looks in progress
    forever; returns their ids. Runs of other hosts are left alone: their writers cannot be checked from here."""
    client, marked = tracker.client(), []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'"):
        if writer_alive(run.data.tags):
            continue
        pid = run.data.tags["reasonloop.pid"]
        client.set_tag(run.info.run_id, "reasonloop.orphaned", f"process {pid} ended before the run did")
        client.set_terminated(run.info.run_id, status="FAILED")
        marked.append(run.info.run_id)
    return marked


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"
