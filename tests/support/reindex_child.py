"""Build one index version in a child process (no Prefect): the target of the kill-mid-reindex test."""

from __future__ import annotations

import sys
from pathlib import Path

from reasonloop.settings import load_settings
from tests.support.indexing import build_index

if __name__ == "__main__":
    state, corpus = Path(sys.argv[1]), Path(sys.argv[2])
    settings = load_settings(state_dir=state, corpus={"path": corpus}, chroma={"upsert_batch_size": 8})
    build = build_index(settings, full=True)
    print(f"built v{build.manifest.version}")
