"""Canary tasks over reasonloop/evaluation: stage a candidate beside production, compare the two arms answer by
answer, and promote."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from reasonloop.evaluation import canary, pairwise

stage_candidate = task(canary.stage_candidate, name="stage-candidate", cache_policy=NO_CACHE)
compare_pairwise = task(pairwise.compare_results, name="compare-pairwise", cache_policy=NO_CACHE)
promote_candidate = task(canary.promote_candidate, name="promote-candidate", cache_policy=NO_CACHE)
