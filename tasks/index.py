"""Index versions as tasks (reasonloop/retrieval/index_survey.py, index_build.py): the survey and the bad-input
gate write nothing; a staged batch talks to Chroma and retries transient failures (its upserts rewrite the same
rows, and the catalog is written only after them); starting, finishing and publishing a version are not retried."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from reasonloop.retrieval import corpus_scan, index_build, index_survey
from tasks.retry import IO_RETRIES

survey_corpus = task(index_survey.survey_corpus, name="survey-corpus", cache_policy=NO_CACHE)
tally_batch = task(index_survey.tally_batch, name="tally-batch", cache_policy=NO_CACHE)
enforce_bad_fraction = task(index_survey.enforce_bad_fraction, name="enforce-bad-fraction", cache_policy=NO_CACHE)
begin_index_version = task(index_build.begin_index_version, name="begin-index-version", cache_policy=NO_CACHE)
read_batch = task(corpus_scan.read_batch, name="read-files", cache_policy=NO_CACHE)
stage_batch = task(index_build.stage_batch, name="stage-batch", **IO_RETRIES, cache_policy=NO_CACHE)
finish_index_version = task(index_build.finish_index_version, name="finish-index-version", cache_policy=NO_CACHE)
publish_index_version = task(index_build.publish_index_version, name="publish-index-version", cache_policy=NO_CACHE)
