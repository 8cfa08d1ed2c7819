"""Screening tasks of the reindex: the document table's Great Expectations suite and the injection scan
(reasonloop/retrieval/screening.py). Pure: no retries."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from reasonloop.retrieval import screening

screen_documents = task(screening.screen_documents, name="screen-documents", cache_policy=NO_CACHE)
scan_for_injection = task(screening.scan_for_injection, name="scan-for-injection", cache_policy=NO_CACHE)
