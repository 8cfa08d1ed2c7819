"""Every flow as a Prefect deployment: on demand always, on its cron when `deployments.<flow>.cron` is set.

One definition serves both ways of running them: `reasonloop serve` (one process, `prefect.serve`) and a work
pool (`prefect.yaml` declares the same names, entrypoints and schedules; a test holds the two together).
Deployed runs take no parameters: they read the configuration of the process that runs them (profile and
REASONLOOP_* variables), so a served deployment runs what `reasonloop --profile X serve` was started with.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reasonloop.errors import ConfigError, ProviderError
from reasonloop.ops.config import DeploymentsConfig
from reasonloop.retrieval.config import CorpusConfig

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

log = logging.getLogger(__name__)

DEPLOYMENT_NAME = "reasonloop"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@dataclass(frozen=True)
class DeploymentSpec:
    """What Prefect is told about one deployment."""

    key: str  # the `deployments:` config key
    command: str  # `reasonloop trigger COMMAND`
    flow_name: str  # the @flow's name
    module: str  # where the flow lives (`flows.<module>.<function>`)
    function: str
    description: str
    cron: str | None
    timezone: str

    @property
    def full_name(self) -> str:
        """`flow/deployment`, as `prefect deployment run` and `run_deployment` name it."""
        return f"{self.flow_name}/{DEPLOYMENT_NAME}"

    @property
    def entrypoint(self) -> str:
        """The file path form `prefect.yaml` uses."""
        return f"{self.module.replace('.', '/')}.py:{self.function}"


_FLOWS = {  # config key: (trigger command, flow name, module, function, description)
    "nightly_eval": ("eval", "nightly-eval", "flows.nightly_eval", "nightly_eval",
                     "Nightly evaluation of the question set; the drift flow runs after it."),
    "nightly_eval_live": ("eval-live", "nightly-eval-live", "flows.live_eval", "nightly_eval_live",
                          "The last day of live traffic judged without references; the drift flow runs after it."),
    "live_canary_check": ("canary-check", "live-canary-check", "flows.live_canary", "check_live_canary",
                          "The running live canary's traffic judged: promote, keep collecting or roll back."),
    "reindex": ("reindex", "reindex", "flows.reindex", "reindex",
                "Reindex the corpus (only changed documents are embedded); started when the corpus changes."),
    "drift": ("drift", "drift", "flows.drift", "drift", "The newest nightly eval against its reference."),
    "build_dpo": ("build-dpo", "build-dpo", "flows.build_dpo", "build_dpo",
                  "Build a DPO preference dataset from the feedback folder."),
}


def deployment_specs(cfg: DeploymentsConfig) -> list[DeploymentSpec]:
    return [DeploymentSpec(key, *_FLOWS[key], cron=schedule.cron, timezone=schedule.timezone or cfg.timezone)
            for key, schedule in cfg.schedules()]


def spec_for(cfg: DeploymentsConfig, command: str) -> DeploymentSpec:
    """The deployment `reasonloop trigger COMMAND` starts."""
    specs = {spec.command: spec for spec in deployment_specs(cfg)}
    if command not in specs:
        raise ConfigError(f"no deployment '{command}': choose one of {', '.join(specs)}")
    return specs[command]


def build_deployments(cfg: DeploymentsConfig, version: str) -> list[Any]:
    """RunnerDeployments for `prefect.serve`; each runs one at a time (a second start waits for the first)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.deployments.runner import EntrypointType

    deployments = []
    for spec in deployment_specs(cfg):
        flow = getattr(importlib.import_module(spec.module), spec.function)
        try:
            schedules = [CronSchedule(cron=spec.cron, timezone=spec.timezone)] if spec.cron else None
        except ValueError as exc:
            raise ConfigError(f"deployments.{spec.key}.cron: {spec.cron!r} is not a valid cron ({exc})") from None
        deployments.append(flow.to_deployment(
            DEPLOYMENT_NAME, schedules=schedules, description=spec.description, version=version,
            tags=["reasonloop", spec.command], entrypoint_type=EntrypointType.MODULE_PATH,
            concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)))
    return deployments


def start_run(spec: DeploymentSpec, tags: list[str] | None = None) -> FlowRun:
    """Create a run of a deployment on the Prefect API and return it at once (it runs where it is served)."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    try:
        return run_deployment(spec.full_name, timeout=0, tags=tags, as_subflow=False)
    except ObjectNotFound:
        raise ProviderError(f"deployment {spec.full_name} is not on the Prefect server: is `reasonloop serve` (or a "
                            "worker with prefect.yaml's deployments) running?") from None


@dataclass(frozen=True)
class RunProgress:
    """One look at a flow run: its state and how many of its task runs finished."""

    state: str  # the state's type: COMPLETED, FAILED, ...
    name: str  # its name: Completed, Partial, Failed, ...
    message: str
    tasks_done: int
    tasks_seen: int

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL


def read_progress(flow_run_id: Any) -> RunProgress:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    state = run.state
    return RunProgress(state=state.type.value if state else "PENDING", name=state.name if state else "Pending",
                       message=(state.message or "") if state else "",
                       tasks_done=sum(1 for t in tasks if t.state and t.state.is_final()), tasks_seen=len(tasks))


def follow_run(flow_run_id: Any, on_progress: Callable[[RunProgress], None], poll_s: float = 1.0,
               timeout_s: float | None = None) -> RunProgress:
    """Poll a flow run until it reaches a terminal state (or `timeout_s`), reporting every look."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        progress = read_progress(flow_run_id)
        on_progress(progress)
        if progress.finished or (deadline is not None and time.monotonic() > deadline):
            return progress
        time.sleep(poll_s)


def serve_deployments(cfg: DeploymentsConfig, corpus: CorpusConfig, version: str) -> None:
    """Serve every deployment from this process until interrupted, with the corpus watch starting reindexes.
    PREFECT_API_URL must point at a real server (schedules need its scheduler)."""
    from prefect import serve

    from reasonloop.ops.corpus_watch import CorpusWatcher

    deployments = build_deployments(cfg, version)
    watch = cfg.watch_corpus
    watcher = None
    if watch.enabled:
        reindex = spec_for(cfg, "reindex")

        def on_change(fingerprint: str) -> None:
            run = start_run(reindex, tags=["corpus-change"])
            log.info("corpus changed (%s): started reindex run %s", fingerprint[:12], run.name)

        watcher = CorpusWatcher(corpus.path, corpus.include, on_change, watch.interval_s, watch.settle_s)
        watcher.start()
    try:
        serve(*deployments, limit=cfg.limit, print_starting_message=False)
    finally:
        if watcher is not None:
            watcher.stop()
