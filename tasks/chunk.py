"""Chunking as a task (reasonloop/retrieval/chunking.py)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from reasonloop.retrieval import chunking

chunk_documents = task(chunking.chunk_documents, name="chunk-documents", cache_policy=NO_CACHE)
