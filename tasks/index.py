"""Index versions as tasks (reasonloop/retrieval/index_survey.py, index_build.py), one per batch of files in each
pass: the survey and the bad-input gate write nothing; a staged batch talks to Chroma and retries transient failures
(its upserts rewrite the same rows, and the catalog is written only after them); starting, finishing and
publishing a version are not retried."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from reasonloop.retrieval import index_build, index_survey
from tasks.retry import IO_RETRIES

survey_corpus = task(index_survey.survey_corpus, name="survey-corpus", cache_policy=NO_CACHE)
gate_files = task(index_survey.gate_files, name="gate-files", cache_policy=NO_CACHE)
enforce_bad_fraction = task(index_survey.enforce_bad_fraction, name="enforce-bad-fraction", cache_policy=NO_CACHE)
begin_index_version = task(index_build.begin_index_version, name="begin-index-version", cache_policy=NO_CACHE)
stage_files = task(index_build.stage_files, name="stage-files", **IO_RETRIES, cache_policy=NO_CACHE)
finish_index_version = task(index_build.finish_index_version, name="finish-index-version", cache_policy=NO_CACHE)
publish_index_version = task(index_build.publish_index_version, name="publish-index-version", cache_policy=NO_CACHE)
