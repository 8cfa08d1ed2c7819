"""Index versions as tasks (reasonloop/retrieval/index_build.py): staging talks to Chroma and retries transient
failures; publishing moves a pointer and is not retried."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from reasonloop.retrieval import index_build
from tasks.retry import IO_RETRIES

stage_index_version = task(index_build.stage_index_version, name="stage-index-version", **IO_RETRIES,
                           cache_policy=NO_CACHE)
publish_index_version = task(index_build.publish_index_version, name="publish-index-version", cache_policy=NO_CACHE)
