"""Scale-out by configuration: the same flows against real servers started by the test on 127.0.0.1."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from flows.nightly_eval import nightly_eval
from flows.reindex import reindex
from reasonloop.index_versions import IndexStore
from reasonloop.settings import Settings
from reasonloop.vectorstore import chroma_client

from .support.servers import chroma_server

pytestmark = [pytest.mark.server, pytest.mark.usefixtures("prefect_server")]


def test_chroma_server_mode(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    with chroma_server(tmp_path / "chroma-data", Path(sys.executable).parent) as port:
        settings = make_settings(chroma={"mode": "http", "host": "127.0.0.1", "port": port})
        indexed = reindex(settings)
        manifest = IndexStore(settings.state_dir, settings.chroma.collection).require_current()
        remote = chroma_client(settings).get_collection(manifest.collection)
        assert remote.count() == indexed.metrics["n_chunks"] >= 12
        assert not settings.chroma_path.exists()  # nothing went to the embedded store
        report = nightly_eval(settings)
        assert report.metrics["n_failed"] == 0 and report.metrics["recall_at_k"] > 0.9
