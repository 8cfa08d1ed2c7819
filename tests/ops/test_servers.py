"""Scale-out by configuration: the same flows against real servers started by the test on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest

from flows.nightly_eval import nightly_eval
from flows.reindex import reindex
from reasonloop.monitoring.runs import run_results
from reasonloop.providers import build_tracker, chroma_of
from reasonloop.retrieval.index_versions import IndexStore
from reasonloop.retrieval.record_sets import load_questions
from reasonloop.schemas import FlowReport
from reasonloop.settings import Settings, load_settings

from ..conftest import ROOT
from ..support.servers import background, chroma_server, dask_cluster, free_port, mlflow_server, reasonloop_env

BIN = Path(sys.executable).parent

pytestmark = [pytest.mark.server, pytest.mark.usefixtures("prefect_server")]


def test_chroma_server_mode(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    with chroma_server(tmp_path / "chroma-data", Path(sys.executable).parent) as port:
        settings = make_settings(chroma={"mode": "http", "host": "127.0.0.1", "port": port})
        indexed = reindex(settings)
        manifest = IndexStore(settings.state_dir, settings.chroma.collection).require_current()
        remote = chroma_of(settings).get_collection(manifest.collection)
        assert remote.count() == indexed.metrics["n_chunks"] >= 12
        assert not settings.chroma_path.exists()  # nothing went to the embedded store
        report = nightly_eval(settings)
        assert report.metrics["n_failed"] == 0 and report.metrics["recall_at_k"] > 0.9


def test_mlflow_tracking_server_mode(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    """Runs, metrics, artifacts (proxied by the server), traces and the prompt registry all go to the server."""
    with mlflow_server(tmp_path / "mlflow-server", BIN) as uri:
        settings = make_settings(mlflow={"tracking_uri": uri}, safety={"enabled": False})
        reindex(settings)
        report = nightly_eval(settings)
        client = mlflow.MlflowClient(uri)
        run = client.get_run(report.run_id)
        assert run.info.status == "FINISHED" and run.data.metrics["n_questions"] == report.metrics["n_questions"]
        assert run.data.params["prompt.reasoning.registry_uri"].startswith("prompts:/chain_of_thought/")
        local = Path(client.download_artifacts(report.run_id, "eval/results.jsonl", str(tmp_path / "dl")))
        assert len(local.read_text().splitlines()) == report.metrics["n_questions"]
        assert (tmp_path / "mlflow-server" / "artifacts").is_dir()  # stored by the server, not by us
        mlflow.set_tracking_uri(uri)
        traces = mlflow.search_traces(run_id=report.run_id, locations=[report.experiment_id], return_type="list")
        assert len(traces) == report.metrics["n_questions"]
    assert not (settings.state_dir / "mlflow.db").exists() and not settings.mlflow_artifact_root.exists()


def outcomes(settings: Settings, report: FlowReport) -> dict[str, tuple[tuple[object, ...], list[float]]]:
    """A logged run's per-question outcome read back from MLflow, each question recorded exactly once: what must be
    equal (answer, citations, calls, error, context, verdict) and the scores (cosines: batched differently in another
    process, they may differ in the last float bits)."""
    results = run_results(build_tracker(settings), report.run_id)
    ids = [r.question.id for r in results]
    assert len(ids) == len(set(ids)), "a question recorded twice"
    return {r.question.id: ((r.answer.answer, r.answer.citations, r.answer.n_calls, r.answer.error,
                             [c.chunk_id for c in r.retrieved], r.verdict.correct, r.verdict.hallucinated,
                             r.verdict.unsupported_claims),
                            [r.answer.confidence, r.verdict.correctness, r.verdict.grounded_fraction])
            for r in results if r.verdict is not None}


def test_batches_run_on_a_dask_cluster(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    """prefect.task_runner: dask against a `dask scheduler` and two `dask worker` processes started here: the batches
    run in the worker processes, which rebuild the reasoner, retriever and judge from their recipes; every question
    is recorded once, and each answer and verdict equals the thread-pool run's."""
    # fp32 vectors: bf16 ones vary with the batch a text is encoded in (Dask batches 256 questions, threads 8), which
    # would blur a per-question comparison of scores
    fresh = {"cache": {"enabled": False, "checkpoint": False}, "safety": {"enabled": False},
             "drift": {"enabled": False}, "embedding": {"backend": "torch"}}
    threads = make_settings(**fresh)
    reindex(threads)
    local = nightly_eval(threads)
    with dask_cluster(BIN, tmp_path / "dask") as client:
        on_dask = make_settings(**fresh, prefect={"task_runner": "dask", "dask": {
            "address": client.scheduler.address, "batch_size": threads.eval.batch_size}})  # the same batches
        remote = nightly_eval(on_dask)

        def built() -> list[str]:
            from reasonloop import recipes

            return sorted(key[0].split(":")[1] for key in recipes._BUILT)

        per_worker = client.run(built)
    assert len(per_worker) == 2 and any("_reasoner_of" in kinds and "_judge_of" in kinds
                                        for kinds in per_worker.values())
    expected = {q.id for q in load_questions(threads.questions.path)}
    assert remote.metrics["n_questions"] == len(expected) > 8  # more than one batch
    on_threads, dask_run = outcomes(threads, local), outcomes(on_dask, remote)
    assert dask_run.keys() == on_threads.keys() == expected
    for qid, (same, scores) in on_threads.items():
        assert dask_run[qid][0] == same and dask_run[qid][1] == pytest.approx(scores, abs=1e-6), qid


def test_a_worker_of_a_process_work_pool_runs_the_deployments(tiny_data: tuple[Path, Path], tmp_path: Path) -> None:
    """prefect.yaml deployed to a real Prefect server, a process work pool and a worker: `reasonloop trigger`
    starts the reindex and the nightly eval there, and both complete and land in MLflow."""
    from reasonloop.ops.prefect_server import local_server

    corpus, questions = tiny_data
    state = tmp_path / "state"
    env = reasonloop_env(state, corpus={"path": corpus}, questions={"path": questions}, safety={"enabled": False},
                         quality={"datasets": {"squad_sample": {"questions": questions}}})
    server_settings = load_settings(state_dir=tmp_path / "prefect-server")
    with local_server(server_settings.prefect_home, free_port()) as api_url:
        env["PREFECT_API_URL"] = api_url

        def prefect(*args: str) -> None:
            done = subprocess.run([str(BIN / "prefect"), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=300)
            assert done.returncode == 0, done.stdout + done.stderr

        prefect("work-pool", "create", "reasonloop", "--type", "process")
        prefect("--no-prompt", "deploy", "--all")
        with background([str(BIN / "prefect"), "worker", "start", "--pool", "reasonloop"], tmp_path / "worker.log",
                        env, cwd=tmp_path):
            for flow in ("reindex", "eval"):
                done = subprocess.run([str(BIN / "reasonloop"), "trigger", flow], env=env, capture_output=True,
                                      text=True, timeout=600, cwd=tmp_path)
                worker_log = (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
                assert done.returncode == 0, done.stdout + done.stderr + worker_log
                assert "│ Completed" in done.stdout
    client = mlflow.MlflowClient(f"sqlite:///{state / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("reasonloop-nightly-eval").experiment_id])
    assert run.info.status == "FINISHED" and run.data.metrics["n_questions"] > 0
    assert json.loads(run.data.params["questions.count"]) == run.data.metrics["n_questions"]
