"""Tracking tasks: the MLflow writers of reasonloop/monitoring (each run tagged with its Prefect flow run, so a run in
the MLflow UI links back to the flow run that wrote it), and the flows' Prefect artifacts.

The writers are not retried: a retry after `start_run` would leave a duplicate run, and MLflow's own HTTP client
already retries transient errors against a tracking server.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from reasonloop.monitoring import eval_run, flow_runs
from reasonloop.monitoring.run_fields import quarantine_table, summary_markdown
from reasonloop.schemas import FlowReport, Reject

R = TypeVar("R")


def flow_run_tags() -> dict[str, str]:
    """The Prefect flow run this task runs in (empty outside a flow)."""
    from prefect.runtime import flow_run

    return {"prefect.flow_run_id": str(flow_run.id or ""), "prefect.flow_run_name": str(flow_run.name or "")}


def tagged(write: Callable[..., R]) -> Callable[..., R]:
    """A writer that tags its run with the Prefect flow run (`context_tags` is keyword-only in every writer)."""
    @functools.wraps(write)
    def written(*args: Any, **kwargs: Any) -> R:
        return write(*args, **{**kwargs, "context_tags": {**flow_run_tags(), **(kwargs.get("context_tags") or {})}})

    return written


def writer(write: Callable[..., R], name: str) -> Any:
    return task(tagged(write), name=name, cache_policy=NO_CACHE)


log_reindex_run = writer(flow_runs.log_reindex_run, "log-reindex-run")
log_eval_run = writer(eval_run.log_eval_run, "log-eval-run")
log_calibration_run = writer(flow_runs.log_calibration_run, "log-calibration-run")
log_canary_run = writer(flow_runs.log_canary_run, "log-canary-run")
log_dpo_build = writer(flow_runs.log_dpo_build, "log-dpo-build")
tag_run = task(flow_runs.tag_run, name="tag-run", cache_policy=NO_CACHE)
interrupted_eval = task(eval_run.interrupted_eval, name="find-interrupted-eval", cache_policy=NO_CACHE)


@task(name="publish-summary")
def publish_summary(report: FlowReport) -> str:
    """The flow's Prefect markdown artifact, under a stable key per flow kind."""
    return str(create_markdown_artifact(markdown=summary_markdown(report), key=f"{report.flow}-summary",
                                        description=f"{report.flow} summary"))


@task(name="publish-quarantine", cache_policy=NO_CACHE)
def publish_quarantine(rejects: list[Reject]) -> None:
    """The quarantine report as a Prefect table artifact (empty when nothing was refused)."""
    create_table_artifact(key="reindex-quarantine", description="inputs refused by the last reindex",
                          table=quarantine_table(rejects).astype(str).to_dict(orient="records"))
