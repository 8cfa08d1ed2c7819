"""The live canary end to end, with scripted models behind one OpenAI-compatible server: `reasonloop canary start`
splits live sessions (sticky by hash) between production and a candidate; the scheduled check, peeked at after every
batch of traffic, keeps collecting until its confidence sequence is clear, then promotes a better candidate (the
production pointer moves and the endpoint serves it), rolls back a worse one, and rolls back an erroring one on its
error rate. Every check is an MLflow run with both arms' figures."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from reasonloop.evaluation.canary import write_pointer
from reasonloop.evaluation.live_canary import LIVE_CANARY_FILE, arm_of, read_canary
from reasonloop.providers import build_live_service, build_tracker
from reasonloop.serving.app import create_app
from reasonloop.settings import Settings, load_settings

from ..conftest import SAMPLE_CORPUS, read_jsonl, write_jsonl
from ..support.indexing import build_index
from ..support.openai_server import OpenAIServer, Reply, user_text

pytestmark = pytest.mark.usefixtures("prefect_server")

PRODUCTION = "prod-model"
QUESTIONS = ["Which NFL team represented the AFC at Super Bowl 50?", "Where did Super Bowl 50 take place?",
             "What were the names of Tesla's sisters?", "When did Tesla emigrate to the United States?",
             "Which network broadcast Super Bowl 50 in the U.S.?"]
MADE_UP = ["The moon council voted to paint every violin purple on Tuesdays.",
           "Seventeen glaciers signed a treaty with the bakery guild."]
CHUNK = re.compile(r'<chunk id="([^"]+)"[^>]*>\n?(.*?)\n?</chunk>', re.S)
BATCH, MAX_SESSIONS = 30, 240
LIVE = {"share": 0.5, "alpha": 0.05, "margin": 0.1, "plan_n": 60, "min_requests": 15}


def reply(request: dict[str, Any]) -> Reply:
    """Production quotes one context sentence and makes one up (grounded 0.5); `better-model` quotes two (1.0),
    `worse-model` makes two up (0.0), `broken-model` fails."""
    model = request["model"]
    if model == "broken-model":
        return Reply(status=500, body='{"error": {"message": "scripted outage"}}')
    chunks = CHUNK.findall(user_text(request))
    quoted = [s.strip() + "." for s in chunks[0][1].split(". ")[:2]] if chunks else MADE_UP
    sentences = {PRODUCTION: [quoted[0], MADE_UP[0]], "better-model": quoted[:2], "worse-model": MADE_UP}[model]
    return Reply(content=json.dumps({
        "reasoning": {"problem": "p", "context": "c", "steps": ["s"], "verification": "v"},
        "answer": " ".join(sentences), "citations": [chunks[0][0]] if chunks else [], "confidence": 0.8}))


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer(reply) as running:
        yield running


@dataclass(frozen=True)
class Live:
    overrides: dict[str, Any]

    def settings(self) -> Settings:
        """Loaded afresh, as the served endpoint and every command do: a promotion shows in the pointer."""
        return load_settings(**self.overrides)

    def env(self) -> dict[str, str]:
        return {f"REASONLOOP_{key.upper()}": value if isinstance(value, str) else json.dumps(value, default=str)
                for key, value in self.overrides.items()}


@pytest.fixture
def live(tmp_path: Path, server: OpenAIServer) -> Live:
    """A served setup over 12 SQuAD paragraphs whose production model is `prod-model` (a promotion's pointer)."""
    corpus = write_jsonl(tmp_path / "corpus" / "tiny.jsonl", read_jsonl(SAMPLE_CORPUS)[:12]).parent
    overrides = {"state_dir": str(tmp_path / "state"), "corpus": {"path": str(corpus)},
                 "llm": {"provider": "openai", "base_url": server.base_url, "max_retries": 0},
                 "serving": {"reload_check_s": 0.1}, "canary": {"live": LIVE}}
    live = Live(overrides)
    build_index(live.settings())
    write_pointer(live.settings().pointer_path, {"llm": {"model": PRODUCTION}})
    return live


def start(live: Live, candidate: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    from reasonloop.cli import app

    for key, value in live.env().items():
        monkeypatch.setenv(key, value)
    started = CliRunner().invoke(app, ["canary", "start", "--candidate", candidate])
    assert started.exit_code == 0, started.output
    again = CliRunner().invoke(app, ["canary", "start", "--candidate", "other-model"])
    assert again.exit_code == 1 and "a live canary is already running" in again.output
    canary = read_canary(live.settings().state_dir / LIVE_CANARY_FILE)
    assert canary is not None and canary.candidate.model == candidate and canary.share == 0.5
    return canary


def ask(client: TestClient, session: int) -> dict[str, Any]:
    response = client.post("/v1/ask", json={"question": QUESTIONS[session % len(QUESTIONS)],
                                            "session_id": f"session-{session}"})
    assert response.status_code in (200, 502), response.text
    return response.json() | {"status": response.status_code}


def until_decided(live: Live, client: TestClient, service: Any) -> tuple[list[Any], dict[str, str]]:
    """Traffic in batches, the check after each (as the schedule would peek); the reports up to the first decision
    and the arm each session was served by."""
    from flows.live_canary import check_live_canary

    reports, arms = [], {}
    canary = read_canary(live.settings().state_dir / LIVE_CANARY_FILE)
    for first in range(0, MAX_SESSIONS, BATCH):
        for session in range(first, first + BATCH):
            served = ask(client, session)
            arm = served.get("arm") or ("candidate" if served["status"] == 502 else "production")
            assert arm == arm_of(canary, f"session-{session}")  # the split is the hash's
            arms[f"session-{session}"] = arm
        assert service.exporter.drain(60)
        reports.append(check_live_canary(live.settings()))
        if reports[-1].metrics["promoted"] or "keep" not in reports[-1].rows["decision"].split(":")[0]:
            break
    return reports, arms


def decisions(live: Live) -> list[Any]:
    tracker = build_tracker(live.settings())
    return tracker.client().search_runs([tracker.experiment_id("live-canary")], order_by=["attributes.start_time"])


def test_a_better_candidate_is_promoted_after_peeking_and_then_served(live: Live, monkeypatch: pytest.MonkeyPatch
                                                                      ) -> None:
    canary = start(live, "better-model", monkeypatch)
    service = build_live_service(live.settings(), live.settings)
    with TestClient(create_app(service)) as client:
        sticky = [ask(client, 7)["arm"] for _ in range(3)]
        assert len(set(sticky)) == 1  # a session stays on its arm
        reports, arms = until_decided(live, client, service)
        assert len(reports) >= 2 and reports[0].rows["decision"].startswith("keep")  # peeked, kept collecting
        last = reports[-1]
        assert last.rows["decision"].startswith("promote"), last.rows
        assert 0.35 < sum(a == "candidate" for a in arms.values()) / len(arms) < 0.65  # share 0.5
        assert last.metrics["candidate.quality"] > last.metrics["production.quality"]
        assert last.metrics["difference.lower"] > -LIVE["margin"]
        assert read_canary(live.settings().state_dir / LIVE_CANARY_FILE) is None
        assert live.settings().llm.model == "better-model"  # the production pointer moved
        import time

        time.sleep(0.3)  # past serving.reload_check_s: the endpoint rebuilds on the moved pointer
        after = ask(client, 7)
        assert (after["arm"], after["model"]) == ("production", "better-model")
    runs = decisions(live)
    assert [r.data.tags["reasonloop.decision"] for r in runs] == ["keep"] * (len(runs) - 1) + ["promote"]
    final = runs[-1]
    assert final.data.params["canary.id"] == canary.id and final.data.params["candidate"] == "better-model"
    assert {"production.n", "candidate.n", "production.error_rate", "candidate.latency_p50_s", "difference.upper",
            "promoted"} <= set(final.data.metrics)


def test_a_worse_candidate_is_rolled_back_and_production_kept(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    start(live, "worse-model", monkeypatch)
    service = build_live_service(live.settings(), live.settings)
    with TestClient(create_app(service)) as client:
        reports, _ = until_decided(live, client, service)
    last = reports[-1]
    assert last.rows["decision"].startswith("rollback") and "worse by more than the margin" in last.rows["decision"]
    assert last.metrics["difference.upper"] < -LIVE["margin"]
    assert read_canary(live.settings().state_dir / LIVE_CANARY_FILE) is None
    assert live.settings().llm.model == PRODUCTION
    assert decisions(live)[-1].data.tags["reasonloop.decision"] == "rollback"


def test_an_erroring_candidate_is_rolled_back_on_its_error_rate(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    from reasonloop.cli import app

    start(live, "broken-model", monkeypatch)
    status = CliRunner().invoke(app, ["canary", "status"])
    assert status.exit_code == 0 and "broken-model" in status.output
    service = build_live_service(live.settings(), live.settings)
    with TestClient(create_app(service)) as client:
        reports, arms = until_decided(live, client, service)
    last = reports[-1]
    assert last.rows["decision"].startswith("rollback") and "failed 100.0% of its requests" in last.rows["decision"]
    assert last.metrics["candidate.n"] == sum(a == "candidate" for a in arms.values())  # failures were traced
    assert last.metrics["production.error_rate"] == 0.0
    assert live.settings().llm.model == PRODUCTION
    gone = CliRunner().invoke(app, ["canary", "status"])
    assert gone.exit_code == 1 and "no live canary is running" in gone.output


def test_stop_ends_the_canary_with_production_unchanged(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    from reasonloop.cli import app

    start(live, "better-model", monkeypatch)
    stopped = CliRunner().invoke(app, ["canary", "stop"])
    assert stopped.exit_code == 0, stopped.output
    assert "stopped by `reasonloop canary stop`" in stopped.output
    assert read_canary(live.settings().state_dir / LIVE_CANARY_FILE) is None
    assert live.settings().llm.model == PRODUCTION
    [run] = decisions(live)
    assert run.data.tags["reasonloop.decision"] == "stop" and run.data.metrics["candidate.n"] == 0
    nothing = CliRunner().invoke(app, ["canary", "check"])
    assert nothing.exit_code == 1 and "no live canary is running" in nothing.output
