"""The safety suite as tasks (reasonloop/evaluation/safety.py)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from reasonloop.evaluation import safety

load_safety_cases = task(safety.load_safety_cases, name="load-safety-cases")
run_safety_suite = task(safety.run_safety_suite, name="run-safety-suite", cache_policy=NO_CACHE)
