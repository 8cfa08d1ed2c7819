"""Retrieval as tasks: contexts for a batch of questions (reasonloop/reasoning/context.py) and retrieval quality
on labeled sets with its floors (reasonloop/evaluation/retrieval_quality.py). Queries retry transient failures."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from reasonloop.evaluation import retrieval_quality
from reasonloop.reasoning import context
from tasks.retry import IO_RETRIES

retrieve_chunks = task(context.retrieve_chunks, name="retrieve-chunks", **IO_RETRIES, cache_policy=NO_CACHE)
load_quality_sets = task(retrieval_quality.load_quality_sets, name="load-quality-sets")
evaluate_retrieval = task(retrieval_quality.evaluate_retrieval, name="evaluate-retrieval", **IO_RETRIES,
                          cache_policy=NO_CACHE)
rank_documents = task(retrieval_quality.rank_documents, name="rank-documents", **IO_RETRIES, cache_policy=NO_CACHE)
score_rankings = task(retrieval_quality.score_rankings, name="score-rankings")
enforce_quality_floors = task(retrieval_quality.enforce_quality_floors, name="enforce-quality-floors")
