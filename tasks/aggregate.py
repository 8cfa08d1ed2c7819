"""Per-question results and run aggregates as tasks (reasonloop/evaluation/aggregate.py); pure, no retries."""

from __future__ import annotations

from prefect import task

from reasonloop.evaluation import aggregate

collect_results = task(aggregate.collect_results, name="collect-results")
summarize_results = task(aggregate.summarize_results, name="summarize-results")
