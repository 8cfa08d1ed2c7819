"""`reasonloop api` as its own process on a free port: answers over real HTTP, and a restart loses nothing it
acknowledged: SIGTERM exports what is pending before it exits, and after a SIGKILL the next start exports it."""

from __future__ import annotations

import json
import os
import signal
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from reasonloop.settings import load_settings

from ..conftest import SAMPLE_CORPUS, read_jsonl, write_jsonl
from ..support.indexing import build_index
from ..support.servers import background, free_port, reasonloop_env, wait_for, wait_http
from .test_api import live_traces

pytestmark = pytest.mark.server
QUESTIONS = ["Which NFL team represented the AFC at Super Bowl 50?", "Where did Super Bowl 50 take place?",
             "What color was used to emphasize the 50th anniversary?"]


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def test_a_restart_loses_nothing_acknowledged(tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "corpus" / "tiny.jsonl", read_jsonl(SAMPLE_CORPUS)[:12]).parent
    state = tmp_path / "state"
    settings = load_settings(state_dir=state, corpus={"path": corpus})
    build_index(settings)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [str(Path(sys.executable).with_name("reasonloop")), "api", "--port", str(port)]

    def env(**serving: Any) -> dict[str, str]:
        return reasonloop_env(state, corpus={"path": corpus}, serving=serving)

    with background(cmd, tmp_path / "graceful.log", env(), stop=signal.SIGTERM) as proc:  # exports, then exits
        wait_http(f"{base}/healthz", 120, proc)
        asked = [post(f"{base}/v1/ask", {"question": q, "session_id": f"s{i}"}) for i, q in enumerate(QUESTIONS)]
        post(f"{base}/v1/feedback", {"trace_id": asked[0]["trace_id"], "rating": "up"})
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(90) == -signal.SIGTERM  # uvicorn shuts down gracefully, then re-raises the signal
    traced = {t.info.tags["reasonloop.trace_id"]: t for t in live_traces(settings)}
    assert set(traced) == {a["trace_id"] for a in asked}  # everything acknowledged was exported before the exit
    assert [a.name for a in traced[asked[0]["trace_id"]].info.assessments] == ["user_rating"]

    with background(cmd, tmp_path / "killed.log", env(export_interval_s=3600)) as proc:  # exports nothing more
        wait_http(f"{base}/healthz", 120, proc)
        late = post(f"{base}/v1/ask", {"question": QUESTIONS[0], "user_id": "u1"})
        post(f"{base}/v1/feedback", {"trace_id": late["trace_id"], "corrected_answer": "Denver Broncos"})
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert late["trace_id"] not in {t.info.tags["reasonloop.trace_id"] for t in live_traces(settings)}

    with background(cmd, tmp_path / "restarted.log", env()) as proc:  # the next start exports what was left
        wait_http(f"{base}/healthz", 120, proc)
        [trace] = wait_for("the acknowledged answer in MLflow", lambda: live_traces(settings, late["trace_id"]), 120,
                           tmp_path / "restarted.log", poll_s=0.5)
        trace = wait_for("its correction in MLflow", lambda: [t for t in live_traces(settings, late["trace_id"])
                                                                if t.info.assessments], 120,
                         tmp_path / "restarted.log", poll_s=0.5)[0]
        assert [a.name for a in trace.info.assessments] == ["expected_response"]
        assert trace.info.trace_metadata["mlflow.trace.user"] == "u1"
    assert len(live_traces(settings)) == len(QUESTIONS) + 1
