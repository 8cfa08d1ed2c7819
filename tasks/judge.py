"""Judging a batch as a task (reasonloop/evaluation/judging.py). An LLM judge retries inside its endpoint."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from reasonloop.evaluation import judging

judge_answers = task(judging.judge_answers, name="judge-answers", cache_policy=NO_CACHE)
