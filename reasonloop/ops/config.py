"""The ops layer's configuration: where flows run (Prefect, Dask) and the deployments' schedules.

Each section is a pydantic model `Settings` composes (`reasonloop/settings.py`); code of this layer takes the
section it needs, never the whole `Settings`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from reasonloop.schemas import Section


class DaskConfig(Section):
    address: str | None = Field(default=None, description="a running Dask scheduler (tcp://host:8786); None: a "
                                "LocalCluster of n_workers processes for each run")
    n_workers: int = Field(default=2, gt=0, description="LocalCluster worker processes")
    threads_per_worker: int = Field(default=1, gt=0, description="LocalCluster threads per worker process")
    batch_size: int = Field(default=256, gt=0, description="questions per task on Dask, in place of "
                            "eval.batch_size: every task run in a worker first rebuilds Prefect's context and API "
                            "client (~50-100 ms), so small batches spend the workers on Prefect")


class PrefectConfig(Section):
    api_url: str | None = Field(default=None, description="None: Prefect's temporary local server")
    task_runner: Literal["threads", "dask"] = Field(default="threads", description="where an eval's batches run: "
                                                    "a thread pool in the flow's process, or a Dask cluster")
    max_workers: int = Field(default=4, gt=0, description="threads: batches at once")
    dask: DaskConfig = Field(default_factory=DaskConfig)


_CRON_FIELD = r"[\w*/,\-?#LW]+"


class ScheduleConfig(Section):
    """One deployment: on demand always; also on a cron schedule when `cron` is set."""

    cron: str | None = Field(default=None, pattern=rf"^{_CRON_FIELD}( {_CRON_FIELD}){{4}}$",
                             description="five-field cron read in `timezone`; None: on demand only")
    timezone: str | None = Field(default=None, description="IANA zone of this cron; None: deployments.timezone")


class CorpusWatchConfig(Section):
    enabled: bool = Field(default=True, description="a change under corpus.path starts a reindex run")
    interval_s: float = Field(default=30.0, gt=0.0, description="how often the corpus folder is looked at")
    settle_s: float = Field(default=10.0, ge=0.0, description="a change must hold this long (copies finish)")


class DeploymentsConfig(Section):
    """`reasonloop serve`: every flow as a Prefect deployment, served from one process (or `prefect.yaml`)."""

    timezone: str = Field(default="UTC", description="IANA zone the crons are read in")
    nightly_eval: ScheduleConfig = Field(default_factory=lambda: ScheduleConfig(cron="0 2 * * *"))
    nightly_eval_live: ScheduleConfig = Field(default_factory=lambda: ScheduleConfig(cron="30 2 * * *"),
                                              description="the live traffic of the last live.window, judged")
    live_canary_check: ScheduleConfig = Field(default_factory=lambda: ScheduleConfig(cron="*/30 * * * *"),
                                              description="the live canary's decision (nothing when none runs)")
    reindex: ScheduleConfig = Field(default_factory=ScheduleConfig)
    drift: ScheduleConfig = Field(default_factory=ScheduleConfig)
    build_dpo: ScheduleConfig = Field(default_factory=lambda: ScheduleConfig(cron="0 4 * * 0"))
    watch_corpus: CorpusWatchConfig = Field(default_factory=CorpusWatchConfig)
    limit: int = Field(default=2, ge=1, description="flow runs at once in the serve process")
    server_port: int = Field(default=4200, gt=0, lt=65536, description="port of the local Prefect server that "
                             "`reasonloop serve` starts when no Prefect API is configured")

    @model_validator(mode="after")
    def _known_zones(self) -> DeploymentsConfig:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        names = {"timezone": self.timezone} | {f"{name}.timezone": cfg.timezone for name, cfg in self.schedules()
                                               if cfg.timezone}
        for key, zone in names.items():
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"{key}: unknown time zone {zone!r} (use an IANA name such as Europe/Berlin)"
                                 ) from None
        return self

    def schedules(self) -> list[tuple[str, ScheduleConfig]]:
        return [("nightly_eval", self.nightly_eval), ("nightly_eval_live", self.nightly_eval_live),
                ("live_canary_check", self.live_canary_check),
                ("reindex", self.reindex), ("drift", self.drift), ("build_dpo", self.build_dpo)]
