"""Index versions: planning, atomic publish, rollback, pruning, the lock, and a real kill mid-reindex."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reasonloop.providers import chroma_of
from reasonloop.retrieval.catalog import Catalog, DocRow
from reasonloop.retrieval.index_versions import IndexBusyError, IndexStore, Manifest
from reasonloop.settings import Settings, load_settings

from ..conftest import ROOT, SAMPLE_CORPUS, read_jsonl, write_jsonl
from ..support.indexing import build_index


def manifest(version: int, content: str) -> Manifest:
    return Manifest(version=version, collection=f"c-v{version:04d}", created_at="now", content_hash=content,
                    embedding_model="m", embedding_sha256="s", chunking={}, n_documents=1, n_chunks=1)


def test_catalog_content_hash_is_content_identity(tmp_path: Path) -> None:
    def content(name: str, rows: list[tuple[str, str]]) -> str:
        catalog = Catalog.create(tmp_path / f"{name}.sqlite")
        catalog.add_documents([DocRow(doc_id=d, path="f", content_hash=h, chunk_ids=[f"{d}::0"]) for d, h in rows])
        return catalog.content_hash()

    assert content("a", [("a", "x"), ("b", "y")]) == content("b", [("b", "y"), ("a", "x")])  # order-free
    assert content("c", [("a", "x")]) != content("d", [("a", "z")])


def test_a_manifest_of_an_older_release_is_read_with_its_counts() -> None:
    old = {"version": 2, "collection": "c-v0002", "created_at": "now", "content_hash": "h", "embedding_model": "m",
           "embedding_sha256": "s", "chunking": {}, "documents": {"a": {"content_hash": "x", "chunk_ids": ["a::0",
                                                                                                          "a::1"]}}}
    read = Manifest.model_validate(old)
    assert (read.n_documents, read.n_chunks, read.reader) == (1, 2, "")


def test_publish_keeps_n_versions_and_rollback_moves_the_pointer(tmp_path: Path) -> None:
    store = IndexStore(tmp_path, "c")
    assert store.pointer() is None and store.next_version() == 1
    dropped = [store.publish(manifest(v, str(v)), keep=2)[1] for v in (1, 2, 3)]
    assert dropped == [[], [], [1]]
    store.forget(dropped[-1])
    assert store.pointer().model_dump() == {"current": 3, "kept": [2, 3]}
    assert store.rollback().current == 2 and store.current().version == 2
    with pytest.raises(Exception, match=r"cannot roll back to 1: kept versions are \[2, 3\]"):
        store.rollback(1)
    store.mark_started(4)  # a build that never finished: its number is not reused
    assert store.next_version() == 5


def test_second_writer_waits_then_gets_a_clear_message(tmp_path: Path) -> None:
    store = IndexStore(tmp_path, "c")
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store.lock(0):
            holding.set()
            release.wait(5)

    thread = threading.Thread(target=hold)
    thread.start()
    holding.wait(5)
    started = time.monotonic()
    with pytest.raises(IndexBusyError, match=rf"another reindex of 'c' is running \(pid {os.getpid()} since"):
        with IndexStore(tmp_path, "c").lock(0.5):
            pass
    assert time.monotonic() - started >= 0.5
    release.set()
    thread.join()
    with store.lock(0):  # free again
        pass


def test_incremental_reindex_embeds_only_changes(make_settings: Callable[..., Settings],
                                                 tiny_data: tuple[Path, Path]) -> None:
    settings = make_settings(index={"keep_versions": 2})
    first = build_index(settings)
    assert first.built and first.embedded == first.manifest.n_chunks and first.copied == 0
    again = build_index(settings)
    assert not again.built and again.manifest.version == 1 and again.embedded == 0  # unchanged: no new version

    corpus_file = next(tiny_data[0].glob("*.jsonl"))
    records = read_jsonl(corpus_file)
    records[0]["text"] += " An appended sentence."
    write_jsonl(corpus_file, records[:-1] + [{"id": "new#0", "title": "New", "text": "A brand new paragraph."}])
    third = build_index(settings)
    plan = third.plan
    assert (plan.changed, plan.removed, plan.added) == ([records[0]["id"]], [records[-1]["id"]], ["new#0"])
    catalog = IndexStore(settings.state_dir, settings.chroma.collection).catalog(third.manifest)
    changed_chunks = len(catalog.documents([records[0]["id"]])[records[0]["id"]].chunk_ids)
    assert third.embedded == changed_chunks + 1
    assert third.copied == third.manifest.n_chunks - third.embedded
    client = chroma_of(settings)
    served = client.get_collection(third.manifest.collection)
    assert served.count() == third.manifest.n_chunks
    assert set(served.get(include=[])["ids"]) == set(catalog.chunk_ids())

    full = build_index(settings, full=True)
    assert full.built and full.manifest.version == 3 and full.embedded == full.manifest.n_chunks
    assert full.manifest.content_hash == third.manifest.content_hash  # same content, same identity
    names = {c if isinstance(c, str) else c.name for c in client.list_collections()}
    assert names == {"reasonloop-v0002", "reasonloop-v0003"}  # keep_versions=2: v1 dropped


def test_another_embedding_backend_is_another_index(make_settings: Callable[..., Settings]) -> None:
    """Switching embedding.backend re-embeds everything (vectors of two encoders never share a version) and the
    serving index of the other backend is refused until then."""
    from reasonloop.errors import ProviderError
    from reasonloop.providers import build_embedder, open_serving_index

    torch = make_settings(embedding={"backend": "torch"})
    first = build_index(torch)
    onnx = make_settings(embedding={"backend": "onnx"})
    with pytest.raises(ProviderError, match="vectors of different encoders do not mix"):
        open_serving_index(onnx, build_embedder(onnx))
    second = build_index(onnx)
    assert second.built and second.embedded == second.manifest.n_chunks and second.copied == 0
    assert (first.manifest.embedding_backend, second.manifest.embedding_backend) == ("torch", "onnx")
    assert open_serving_index(onnx, build_embedder(onnx)).manifest.version == 2
    assert (onnx.state_dir / "models" / first.manifest.embedding_sha256 / "model.onnx").is_file()


@pytest.mark.slow
def test_a_reindex_killed_mid_write_leaves_the_serving_version_intact(tmp_path: Path) -> None:
    """SIGKILL a real child process while it upserts a new version; the old version keeps serving."""
    small, big = tmp_path / "small", tmp_path / "big"
    records = read_jsonl(SAMPLE_CORPUS)
    write_jsonl(small / "c.jsonl", records[:4])
    write_jsonl(big / "c.jsonl", records)
    child = [sys.executable, "-m", "tests.support.reindex_child", str(tmp_path / "state")]
    subprocess.run([*child, str(small)], cwd=ROOT, check=True, capture_output=True, timeout=300)
    settings = load_settings(state_dir=tmp_path / "state", corpus={"path": small})
    store = IndexStore(settings.state_dir, settings.chroma.collection)
    before = store.current()
    assert before is not None and before.version == 1

    proc = subprocess.Popen([*child, str(big)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    client = chroma_of(settings)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # kill once the new collection has some, not all, chunks
        names = {c if isinstance(c, str) else c.name for c in client.list_collections()}
        if "reasonloop-v0002" in names and client.get_collection("reasonloop-v0002").count() >= 8:
            break
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    partial = client.get_collection("reasonloop-v0002").count()
    assert 8 <= partial < 48
    assert store.current() == before  # the pointer never moved
    assert client.get_collection(before.collection).count() == before.n_chunks

    rerun = subprocess.run([*child, str(big)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    after = IndexStore(settings.state_dir, settings.chroma.collection).current()
    assert after.version == 3 and after.n_chunks >= 48  # v2 was abandoned, never reused
    names = {c if isinstance(c, str) else c.name for c in chroma_of(settings).list_collections()}
    assert "reasonloop-v0002" not in names  # the half-built collection was cleaned up
