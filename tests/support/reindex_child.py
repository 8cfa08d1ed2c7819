"""Build one index version in a child process (no Prefect): the target of the kill-mid-reindex test."""

from __future__ import annotations

import sys
from pathlib import Path

from reasonloop.providers import build_embedder
from reasonloop.settings import load_settings
from tasks.chunk import chunk_documents
from tasks.index import publish_index_version, stage_index_version
from tasks.load import load_documents

if __name__ == "__main__":
    state, corpus = Path(sys.argv[1]), Path(sys.argv[2])
    settings = load_settings(state_dir=state, corpus={"path": corpus}, chroma={"upsert_batch_size": 8})
    documents = load_documents.fn(corpus, settings.corpus).documents
    chunks = chunk_documents.fn(documents, settings.chunking)
    staged = stage_index_version.fn(documents, chunks, settings, build_embedder(settings), full=True)
    build = publish_index_version.fn(staged, settings)
    print(f"built v{build.manifest.version}")
