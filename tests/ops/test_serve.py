"""`reasonloop serve` against the real Prefect server it starts: a cron schedule fires and its run completes,
`reasonloop trigger` starts and follows a run, and a corpus change starts a reindex."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import mlflow
import pytest

from reasonloop.retrieval.index_versions import IndexStore

from ..conftest import SAMPLE_CORPUS, read_jsonl, write_jsonl
from ..support.servers import background, free_port, reasonloop_env, wait_for

pytestmark = [pytest.mark.server, pytest.mark.slow]
BIN = Path(sys.executable).parent


def flow_runs(api_url: str, **flow_run_filter: Any) -> list[dict[str, Any]]:
    body = json.dumps({"flow_runs": flow_run_filter, "limit": 50}).encode()
    request = urllib.request.Request(f"{api_url}/flow_runs/filter", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def deployed(api_url: str, flow_name: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/deployments/name/{flow_name}/reasonloop", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def completed(api_url: str, *tags: str) -> list[dict[str, Any]]:
    return flow_runs(api_url, tags={"all_": list(tags)}, state={"type": {"any_": ["COMPLETED"]}})


def test_serve_fires_a_cron_follows_a_trigger_and_reindexes_on_change(tiny_data: tuple[Path, Path],
                                                                      tmp_path: Path) -> None:
    corpus, questions = tiny_data
    state, port, log = tmp_path / "state", free_port(), tmp_path / "serve.log"
    env = reasonloop_env(
        state, corpus={"path": corpus}, questions={"path": questions}, safety={"enabled": False},
        quality={"datasets": {"squad_sample": {"questions": questions, "corpus": corpus}}},
        deployments={"server_port": port, "nightly_eval": {"cron": "* * * * *"},
                     "watch_corpus": {"interval_s": 2, "settle_s": 2}})
    env.update({"PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5", "PREFECT_RUNNER_POLL_FREQUENCY": "2"})
    api_url = f"http://127.0.0.1:{port}/api"

    with background([str(BIN / "reasonloop"), "serve"], log, env):
        wait_for("the deployments were not served", lambda: all(
            deployed(api_url, name) for name in ("nightly-eval", "reindex", "drift", "build-dpo")), 240, log)

        # on demand: trigger starts the run, follows it and reports the MLflow run it wrote
        triggered = subprocess.run([str(BIN / "reasonloop"), "trigger", "reindex"], env=env, capture_output=True,
                                   text=True, timeout=600)
        assert triggered.returncode == 0, triggered.stdout + triggered.stderr
        assert "│ Completed" in triggered.stdout and "MLflow reindex run" in triggered.stdout
        assert IndexStore(state, "reasonloop").require_current().version == 1

        # on schedule: the every-minute cron of the nightly eval creates a run, and it completes
        scheduled = wait_for("no scheduled nightly eval completed",
                             lambda: completed(api_url, "auto-scheduled", "eval"), 240, log)[0]
        assert scheduled["tags"] and "eval" in scheduled["tags"]
        client = mlflow.MlflowClient(f"sqlite:///{state / 'mlflow.db'}")
        experiment = client.get_experiment_by_name("reasonloop-nightly-eval")
        runs = client.search_runs([experiment.experiment_id],
                                  filter_string=f"tags.`prefect.flow_run_id` = '{scheduled['id']}'")
        assert len(runs) == 1 and runs[0].info.status == "FINISHED" and runs[0].data.metrics["n_questions"] > 0

        # on change: a new corpus file starts a reindex, which serves a new version
        extra = [r for r in read_jsonl(SAMPLE_CORPUS) if r["id"] not in {d["id"] for d in read_jsonl(
            next(corpus.glob("*.jsonl")))}][:2]
        write_jsonl(corpus / "added.jsonl", extra)
        wait_for("no reindex started by the corpus change completed",
                 lambda: completed(api_url, "corpus-change"), 240, log)
        assert IndexStore(state, "reasonloop").require_current().version == 2
    assert not (state / "prefect" / "server.json").exists()  # serve stopped its server


def test_prefect_ui_serves_the_ui_and_says_when_one_already_runs(tmp_path: Path) -> None:
    """`make prefect-ui`: the Prefect server and its UI on the configured port, its database in the state folder;
    SIGTERM (`docker stop`, systemd) stops it as cleanly as Ctrl-C."""
    state, port = tmp_path / "state", free_port()
    env = reasonloop_env(state, deployments={"server_port": port})
    log = tmp_path / "prefect-ui.log"
    with background([str(BIN / "reasonloop"), "prefect-ui"], log, env, stop=signal.SIGTERM):
        wait_for("the Prefect UI did not answer", lambda: html_page(f"http://127.0.0.1:{port}/"), 240, log)
        assert (state / "prefect" / "prefect.db").exists()
        again = subprocess.run([str(BIN / "reasonloop"), "prefect-ui"], env=env, capture_output=True, text=True,
                               timeout=120)
        assert again.returncode == 0 and f"already answers: open http://127.0.0.1:{port}" in again.stdout
    assert not (state / "prefect" / "server.json").exists()


def html_page(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200 and "text/html" in response.headers["Content-Type"]
    except OSError:
        return False
