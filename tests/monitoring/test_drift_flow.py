"""The drift flow: end to end under the Prefect test server (nightly evals on the tiny data, then a shifted question set
after a reindex that added new documents), what MLflow, Prefect's events and a local webhook receive; the nightly
metric series over logged runs; thin data giving `insufficient_data`; and the pure parts called directly."""

from __future__ import annotations

import inspect
import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from flows.drift import drift
from flows.nightly_eval import nightly_eval
from flows.reindex import reindex
from reasonloop.errors import ReasonloopError
from reasonloop.monitoring import drift_stats as stats
from reasonloop.monitoring.config import DriftConfig
from reasonloop.monitoring.drift_report import signal_metrics
from reasonloop.monitoring.drift_run import EVENT, post_webhook
from reasonloop.monitoring.drift_signals import answer_values
from reasonloop.monitoring.drift_stats import SignalResult
from reasonloop.monitoring.drift_windows import NO_REFERENCE, NO_RUN, one_per_question
from reasonloop.providers import build_tracker
from reasonloop.schemas import AnswerRecord, Question, QuestionResult, RetrievedChunk
from reasonloop.settings import Settings

from ..conftest import ROOT, read_jsonl, write_jsonl

PUBMEDQA = ROOT / "data" / "drift" / "pubmedqa_questions.jsonl"
WINDOW_SIGNALS = ["query", "retrieval", "output.answer_length", "output.tokens", "output.refusal", "output.strategy",
                  "output.citation"]
SIGNALS = [*WINDOW_SIGNALS, "quality.accuracy", "quality.grounding_rate", "corpus"]


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook receiver on 127.0.0.1: (URL with a token in its path, like a chat webhook's; requests received)."""
    received: list[dict[str, Any]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            received.append({"path": self.path, "content_type": self.headers["Content-Type"], "body": body})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/T000/B000/s3cr3t-t0ken", received
    server.shutdown()
    server.server_close()


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def drift_events(resource_id: str, wait_s: float = 20.0) -> list[Any]:
    """`reasonloop.drift.detected` events the Prefect test server stored for a resource (events land in batches)."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    query = EventFilter(event=EventNameFilter(name=[EVENT]), resource=EventResourceFilter(id=[resource_id]))
    deadline = time.monotonic() + wait_s
    with get_client(sync_client=True) as client:
        while True:
            events = client.read_events(filter=query, limit=50).events  # the server refuses its client's default 100
            if events or time.monotonic() > deadline:
                return events
            time.sleep(0.5)


def artifact_text(client: MlflowClient, run_id: str, path: str) -> str:
    return Path(client.download_artifacts(run_id, path)).read_text(encoding="utf-8")


def by_signal(client: MlflowClient, run_id: str) -> dict[str, dict[str, Any]]:
    document = json.loads(artifact_text(client, run_id, "drift/signals.json"))
    return {s["signal"]: s for s in document["signals"]}


# --- end to end ----------------------------------------------------------------------------------------------------

@pytest.mark.usefixtures("prefect_server")
def test_drift_flow_end_to_end(make_settings: Callable[..., Settings], tiny_data: tuple[Path, Path], tmp_path: Path,
                               webhook: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = webhook
    # 18 tiny questions a run: min_samples 10 lets the windows be compared at all (the default, 20, would not)
    # drift runs here by hand, not after each nightly eval (enabled: false), to check each step's result
    settings = make_settings(safety={"enabled": False}, drift={"enabled": False, "min_samples": 10, "webhook_url": url})
    client = MlflowClient(settings.mlflow_tracking_uri)

    # nothing to compare: no nightly eval yet, then the first one (no reference) -> insufficient data, no alarm
    for expected_note in (NO_RUN, NO_REFERENCE):
        if expected_note == NO_REFERENCE:
            reindex(settings)
            first = nightly_eval(settings)
        thin = drift(settings)
        run = client.get_run(thin.run_id)
        assert run.data.tags["drift"] == "false" and run.data.tags["drift.signals"] == ""
        signals = by_signal(client, thin.run_id)
        assert list(signals) == SIGNALS
        assert all(s["status"] == "insufficient_data" and not s["drifted"] for s in signals.values())
        assert all(expected_note in signals[name]["detail"] for name in WINDOW_SIGNALS)
        assert thin.metrics["drift"] == 0 and thin.metrics["query.insufficient_data"] == 1
        assert "query.statistic" not in thin.metrics and thin.metrics["query.threshold"] == 0.01
    assert run.data.params["current.run_id"] == first.run_id and run.data.params["reference.kind"] == "none"

    # the same questions again: every window signal is measured and quiet; the index did not change
    second = nightly_eval(settings)
    quiet = drift(settings)
    signals = by_signal(client, quiet.run_id)
    measured = [name for name in [*WINDOW_SIGNALS, "corpus"] if name != "output.tokens"]
    assert all(signals[name]["status"] == "ok" for name in measured), signals
    assert signals["query"]["n_reference"] == signals["query"]["n_current"] == 18
    # every answer was reused from the cache, which records 0 tokens: no token counts this run, not a drop to 0
    assert signals["output.tokens"]["status"] == "insufficient_data" and signals["output.tokens"]["n_current"] == 0
    assert signals["quality.accuracy"]["status"] == "insufficient_data"  # 2 nights: no series yet
    assert "no reindex in between" in signals["corpus"]["detail"]
    assert client.get_run(quiet.run_id).data.tags["drift"] == "false" and not received
    assert client.get_run(second.run_id).data.tags["reasonloop.drift"] == "false"

    # shift: biomedical questions, after a reindex that added biomedical abstracts to the corpus
    pubmed = read_jsonl(PUBMEDQA)[:40]
    write_jsonl(tiny_data[0] / "pubmed.jsonl", [{"id": f"pubmed-{q['id']}", "title": "PubMedQA",
                                                 "text": q["metadata"]["long_answer"]} for q in pubmed[:30]])
    reindex(settings)
    shifted_questions = write_jsonl(tmp_path / "pubmed.jsonl", pubmed)
    shifted = make_settings(safety={"enabled": False}, questions={"path": shifted_questions},
                            drift={"enabled": False, "min_samples": 10, "webhook_url": url})
    third = nightly_eval(shifted)
    report = drift(shifted)

    run = client.get_run(report.run_id)
    metrics, params, tags = run.data.metrics, run.data.params, run.data.tags
    fired = tags["drift.signals"].split(",")
    assert tags["drift"] == "true" and {"query", "corpus"} <= set(fired) and tags["reasonloop.flow"] == "drift"
    assert params["current.run_id"] == third.run_id and params["reference.kind"] == "previous_runs"
    assert params["reference.run_ids"] == f"{first.run_id},{second.run_id}" and params["window"] == "5"
    assert params["webhook"] == "configured" and "s3cr3t" not in json.dumps(params)
    assert metrics["query.drifted"] == 1 and metrics["query.p_value"] < metrics["query.threshold"] == 0.01
    assert metrics["query.statistic"] > 0 and metrics["query.centroid_shift"] > 0.5
    assert metrics["query.n_reference"] == 18 and metrics["query.n_current"] == 40
    assert metrics["corpus.drifted"] == 1 and metrics["corpus.p_value"] < 0.01 and metrics["corpus.n_current"] == 30
    assert metrics["drift"] == 1 and metrics["n_drifted"] == len(fired)
    for name in SIGNALS:
        assert {f"{name}.threshold", f"{name}.drifted", f"{name}.insufficient_data"} <= metrics.keys()
    assert report.rows["drift"] == f"yes: {', '.join(fired)}" and report.rows["query"].startswith("DRIFT: MMD²")
    assert client.get_run(third.run_id).data.tags["reasonloop.drift.run_id"] == report.run_id

    document = json.loads(artifact_text(client, report.run_id, "drift/signals.json"))
    assert document["fired"] == fired and document["reference_run_ids"] == [first.run_id, second.run_id]
    assert document["quality_run_ids"] == [first.run_id, second.run_id, third.run_id]
    page = artifact_text(client, report.run_id, "drift/report.html")
    plots = {a.path for a in client.list_artifacts(report.run_id, "drift/plots")}
    assert {f"drift/plots/{name}.png" for name in ("retrieval", "output_answer_length", "output_tokens",
                                                    "output_categories", "query_projection", "quality_series")} == plots
    assert page.count("data:image/png;base64,") == len(plots) and "<td>query</td><td>drift</td>" in page

    [post] = received  # one alert: the quiet runs sent nothing
    body = json.loads(post["body"])
    assert post["content_type"] == "application/json" and body["event"] == EVENT
    assert body["drift_run_id"] == report.run_id and body["current_run_id"] == third.run_id
    assert body["fired"] == fired and [s["signal"] for s in body["signals"]] == fired
    assert "s3cr3t" not in post["body"] and tags["drift.webhook"] == "sent"

    [event] = drift_events(f"reasonloop.drift.{report.experiment_id}")
    assert event.payload["fired"] == fired and event.payload["drift_run_id"] == report.run_id
    assert any(r.id == f"mlflow.run.{report.run_id}" and r.role == "drift-run" for r in event.related)


# --- the nightly metric series -------------------------------------------------------------------------------------

def log_nights(settings: Settings, accuracy: np.ndarray, grounding: np.ndarray) -> list[str]:
    """Finished nightly-eval runs one minute apart with only their metrics (no per-question results, no index)."""
    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment_id = build_tracker(settings).ensure_experiment("nightly-eval")
    start, ids = 1_700_000_000_000, []
    for night, (a, g) in enumerate(zip(accuracy, grounding, strict=True)):
        at = start + night * 60_000
        run = client.create_run(experiment_id, start_time=at, run_name="nightly-eval")
        client.log_batch(run.info.run_id, metrics=[Metric("accuracy", float(a), at, 0),
                                                   Metric("grounding_rate", float(g), at, 0)])
        client.set_terminated(run.info.run_id, "FINISHED", end_time=at + 1000)
        ids.append(run.info.run_id)
    return ids


@pytest.mark.usefixtures("prefect_server")
def test_quality_drift_over_the_nightly_series(make_settings: Callable[..., Settings]) -> None:
    """30 nights; accuracy drops by 4 reference sds from night 22 on, grounding stays put. The accuracy CUSUM fires
    after the drop; runs without per-question results leave the other signals insufficient; an
    unreachable webhook is a warning, not a failure."""
    settings = make_settings(drift={"quality": {"history": 30, "reference_runs": 15}, "webhook_url": closed_port_url()})
    rng = np.random.default_rng(1)
    accuracy, grounding = rng.normal(0.70, 0.02, 30), rng.normal(0.95, 0.01, 30)
    accuracy[22:] -= 0.08
    ids = log_nights(settings, accuracy, grounding)

    report = drift(settings)
    client = MlflowClient(settings.mlflow_tracking_uri)
    signals = by_signal(client, report.run_id)
    accuracy_signal, grounding_signal = signals["quality.accuracy"], signals["quality.grounding_rate"]
    assert accuracy_signal["drifted"] and accuracy_signal["extra"]["direction"] == -1
    extra = accuracy_signal["extra"]  # the change point: where the alarming sum last left zero, at or before the drop
    assert 15 <= extra["change_index"] <= 22 <= extra["alarm_index"] and accuracy_signal["n_reference"] == 15
    assert not grounding_signal["drifted"] and grounding_signal["status"] == "ok"
    assert report.metrics["quality.accuracy.change_index"] == extra["change_index"]
    assert report.metrics["quality.accuracy.statistic"] > report.metrics["quality.accuracy.threshold"] == 8
    for name in WINDOW_SIGNALS:  # no eval/results.jsonl in these runs
        assert signals[name]["status"] == "insufficient_data" and "no readable eval/results.jsonl" in \
            signals[name]["detail"]
    assert signals["corpus"]["status"] == "insufficient_data"
    assert "logged no index version" in signals["corpus"]["detail"]
    tags = client.get_run(report.run_id).data.tags
    assert tags["drift"] == "true" and tags["drift.signals"] == "quality.accuracy" and tags["drift.webhook"] == "failed"
    assert client.get_run(report.run_id).data.params["reference.run_ids"] == ",".join(ids[-6:-1])
    assert {a.path for a in client.list_artifacts(report.run_id, "drift/plots")} == {"drift/plots/quality_series.png"}

    before = drift(settings, run_id=ids[21])  # an older night: the series ends there, before the drop
    assert not by_signal(client, before.run_id)["quality.accuracy"]["drifted"]
    assert MlflowClient(settings.mlflow_tracking_uri).get_run(before.run_id).data.params["current.run_id"] == ids[21]
    with pytest.raises(ReasonloopError, match="no run not-a-run in the tracking store"):
        drift(settings, run_id="not-a-run")


# --- pure parts ----------------------------------------------------------------------------------------------------

def test_config_defaults_are_the_statistics_defaults() -> None:
    def default(function: Callable[..., Any], name: str) -> Any:
        return inspect.signature(function).parameters[name].default

    cfg = DriftConfig()
    assert cfg.min_samples == default(stats.detect_query_drift, "min_samples") == 20
    assert (cfg.query.alpha, cfg.query.max_samples, cfg.query.n_permutations) == tuple(
        default(stats.detect_query_drift, n) for n in ("alpha", "max_samples", "n_permutations"))
    assert (cfg.retrieval.alpha, cfg.retrieval.psi_threshold, cfg.retrieval.low_score, cfg.retrieval.n_bins) == tuple(
        default(stats.detect_retrieval_drift, n) for n in ("alpha", "psi_threshold", "low_score", "n_bins"))
    assert (cfg.output.alpha, cfg.output.psi_threshold, cfg.output.n_bins) == tuple(
        default(stats.detect_numeric_drift, n) for n in ("alpha", "psi_threshold", "n_bins"))
    assert cfg.output.min_count == default(stats.detect_categorical_drift, "min_count")
    assert (cfg.quality.k, cfg.quality.h, cfg.quality.min_samples) == tuple(
        default(stats.detect_quality_drift, n) for n in ("k", "h", "min_samples"))
    assert (cfg.corpus.alpha, cfg.corpus.min_changed, cfg.corpus.max_samples) == tuple(
        default(stats.detect_corpus_drift, n) for n in ("alpha", "min_changed", "max_samples"))
    assert cfg.window == 5 and cfg.enabled and cfg.webhook() is None


def test_webhook_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = DriftConfig(webhook_url="http://127.0.0.1:1/plain", webhook_url_env="DRIFT_HOOK")
    assert cfg.webhook() == "http://127.0.0.1:1/plain"
    monkeypatch.setenv("DRIFT_HOOK", "https://hooks.example/T/B/token")
    assert cfg.webhook() == "https://hooks.example/T/B/token"
    with pytest.raises(ValueError, match="webhook_url"):
        DriftConfig(webhook_url="file:///etc/passwd")


def result(qid: str, answer: str = "Paris.", *, retrieved: list[RetrievedChunk] | None = None, **fields: Any
           ) -> QuestionResult:
    chunks = [RetrievedChunk(chunk_id="c1", doc_id="d1", text="t", score=2.5, rank=1, dense_score=0.61)] \
        if retrieved is None else retrieved
    return QuestionResult(question=Question(id=qid, question=f"question {qid}?", reference="Paris"),
                          retrieved=chunks, answer=AnswerRecord(question_id=qid, answer=answer, **fields))


def test_answer_values_per_question() -> None:
    bm25_only = RetrievedChunk(chunk_id="c2", doc_id="d2", text="t", score=7.0, rank=1)
    results = [result("a", citations=["c1"], tokens_out=12),
               result("b", "I don't know from this context.", retrieved=[], tokens_out=9),
               result("c", "cached", retrieved=[bm25_only], cache_hit=True, strategy="direct"),
               result("d", "", error="timeout"),
               result("e", "I can't follow instructions embedded in a question; please ask the question alone.",
                      guardrails=["input: refused (override)"], n_calls=0)]
    values = answer_values(results, DriftConfig().output)
    assert values["retrieval"][:3] == [0.61, pytest.approx(math.nan, nan_ok=True), 7.0]  # cosine first; empty: NaN
    assert values["output.tokens"][0] == 12 and math.isnan(values["output.tokens"][2])  # cache hit: 0 tokens, not data
    assert math.isnan(values["output.answer_length"][3]) and values["output.answer_length"][2] == len("cached")
    assert values["output.refusal"] == [False, True, False, None, True]
    assert values["output.strategy"] == ["chain_of_thought", "chain_of_thought", "direct", None, "chain_of_thought"]
    assert values["output.citation"] == [True, False, False, None, False]


def test_the_reference_holds_each_question_once() -> None:
    """Newest run first: a question's newest fresh answer wins over a newer reused one; reused only when alone."""
    newest_first = [result("a", "reused", cache_hit=True), result("b", "new b"),
                    result("a", "fresh a"), result("b", "old b"), result("c", "reused c", cache_hit=True)]
    assert [r.answer.answer for r in one_per_question(newest_first)] == ["fresh a", "new b", "reused c"]


def test_signal_metrics_names_and_missing_values() -> None:
    thin = SignalResult(signal="query", test="mmd", threshold=0.01, status="insufficient_data", n_reference=3,
                        n_current=0, detail="too few")
    mix = stats.detect_categorical_drift(["cot"] * 40 + ["x", "y"], ["cot"] * 30 + ["react"] * 30,
                                         signal="output.strategy")
    metrics = signal_metrics([thin, mix])
    assert "query.statistic" not in metrics and "query.p_value" not in metrics  # missing, not 0
    assert metrics["query.insufficient_data"] == 1 and metrics["query.drifted"] == 0
    assert metrics["output.strategy.drifted"] == 1 and metrics["output.strategy.reference_share.react"] == 0
    assert all("(" not in key for key in metrics)  # MLflow refuses "(rare)" in a metric name
    assert metrics["drift"] == 1 and metrics["n_drifted"] == 1


def test_a_failed_webhook_says_why_without_the_url() -> None:
    url = closed_port_url() + "/T000/s3cr3t"
    reason = post_webhook(url, {"fired": ["query"]}, timeout_s=2)
    assert reason is not None and "s3cr3t" not in reason and "127.0.0.1" not in reason
    assert post_webhook("ftp://example.org/x", {}, timeout_s=2) == "not an http(s) URL"
