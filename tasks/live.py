"""Live traffic as tasks: the window of traces read back from MLflow (reads: retried), the live eval's run, and the
live canary's decision and its run."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from reasonloop.evaluation import canary_decision, live_canary
from reasonloop.monitoring import live_canary_run, live_eval_run, live_traces
from tasks.retry import IO_RETRIES
from tasks.track import writer

read_live_traffic = task(live_traces.read_live_window, name="read-live-traffic", **IO_RETRIES, cache_policy=NO_CACHE)
log_live_eval_run = writer(live_eval_run.log_live_eval_run, "log-live-eval-run")
read_canary_traffic = task(live_traces.read_canary_traffic, name="read-canary-traffic", **IO_RETRIES,
                           cache_policy=NO_CACHE)
decide_canary = task(canary_decision.decide, name="decide-live-canary", cache_policy=NO_CACHE)
clear_canary = task(live_canary.clear_canary, name="clear-live-canary", cache_policy=NO_CACHE)
log_live_canary_run = writer(live_canary_run.log_live_canary_run, "log-live-canary-run")
