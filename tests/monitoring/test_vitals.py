"""Vitals over time: the nightly eval and drift log them as MLflow metrics, `reasonloop report` renders the last
runs as a dashboard with trend plots, and Prometheus gets the newest run's (text file and scrape endpoint)."""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from reasonloop.cli import app
from reasonloop.monitoring.vitals import VITALS, prometheus_text, render_dashboard
from reasonloop.settings import Settings

from ..support.servers import free_port, http_server, reasonloop_env


def runs_frame() -> pd.DataFrame:
    """Three runs as `mlflow.search_runs` returns them; the oldest lacks the drift flags (drift had not run)."""
    return pd.DataFrame({
        "run_id": ["r3" * 8, "r2" * 8, "r1" * 8], "experiment_id": ["7", "7", "7"],
        "start_time": pd.to_datetime(["2026-12-03 02:00", "2026-12-02 02:00", "2026-12-01 02:00"], utc=True),
        "metrics.accuracy": [0.61, 0.70, 0.72], "metrics.grounding_rate": [0.9, 0.95, 0.97],
        "metrics.hallucination_rate": [0.1, 0.05, 0.03], "metrics.latency_p95_s": [1.5, 1.2, 1.1],
        "metrics.context_chars_mean": [2100.0, 1800.0, 1750.0], "metrics.cost_per_query_usd": [0.002, 0.001, 0.001],
        "metrics.drift": [1.0, 0.0, float("nan")], "metrics.drift.n_signals": [2.0, 0.0, float("nan")]})


def test_the_dashboard_lists_runs_newest_first_and_plots_each_vital() -> None:
    page = render_dashboard(runs_frame(), lambda e, r: f"http://mlflow/#/experiments/{e}/runs/{r}", "vitals")
    assert page.index("r3r3r3r3r3r3") < page.index("r2r2r2r2r2r2") < page.index("r1r1r1r1r1r1")
    assert "http://mlflow/#/experiments/7/runs/" + "r3" * 8 in page
    logged = {v.metric for v in VITALS} & {c.removeprefix("metrics.") for c in runs_frame().columns}
    assert page.count("<img") == len(logged) == 8  # latency p50 and n_failed were not logged: no empty plots
    assert "<td>0.61</td>" in page and "<td>2100</td>" in page


def test_an_empty_history_says_what_to_run() -> None:
    assert "reasonloop eval" in render_dashboard(pd.DataFrame(), str, "vitals")
    assert prometheus_text(pd.DataFrame(), "x") == ""


def test_prometheus_gets_the_newest_runs_vitals_and_nothing_made_up() -> None:
    frame = runs_frame().assign(**{"metrics.drift": [float("nan"), 0.0, 0.0]})
    families = {f.name: f for f in text_string_to_metric_families(prometheus_text(frame, "reasonloop-nightly-eval"))}
    [sample] = families["reasonloop_accuracy"].samples
    assert sample.value == 0.61 and sample.labels == {"experiment": "reasonloop-nightly-eval", "run_id": "r3" * 8}
    assert families["reasonloop_drift_n_signals"].samples[0].value == 2.0
    assert "reasonloop_drift" not in families and "reasonloop_latency_p50_s" not in families  # not logged
    newest = pd.Timestamp("2026-12-03 02:00", tz="UTC").timestamp()
    assert families["reasonloop_last_run_timestamp_seconds"].samples[0].value == newest
    assert families["reasonloop_accuracy"].type == "gauge"


@pytest.mark.usefixtures("prefect_server")
def test_nightly_runs_carry_the_vitals_and_the_report_reads_them(make_settings: Callable[..., Settings],
                                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    from flows.nightly_eval import nightly_eval
    from flows.reindex import reindex

    settings = make_settings(safety={"enabled": False}, drift={"min_samples": 5})
    reindex(settings)
    first, second = nightly_eval(settings), nightly_eval(settings)
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    metrics = client.get_run(second.run_id).data.metrics
    assert metrics["context_chars_mean"] > 100  # characters of the chunks each answer read
    assert metrics["drift"] == 0.0 and metrics["drift.n_signals"] == 0.0  # same questions, same answers
    assert metrics["drift.query"] == 0.0  # one flag per signal that had enough data

    monkeypatch.setenv("REASONLOOP_STATE_DIR", str(settings.state_dir))
    page, prom = tmp_path / "vitals.html", tmp_path / "reasonloop.prom"
    result = CliRunner().invoke(app, ["report", "--last", "5", "--out", str(page), "--prometheus", str(prom)])
    assert result.exit_code == 0, result.output
    text = page.read_text(encoding="utf-8")
    assert first.run_id[:12] in text and second.run_id[:12] in text and text.count("<img") >= 5
    families = {f.name: f for f in text_string_to_metric_families(prom.read_text(encoding="utf-8"))}
    assert families["reasonloop_accuracy"].samples[0].labels["run_id"] == second.run_id


@pytest.mark.server
@pytest.mark.usefixtures("prefect_server")
def test_the_metrics_endpoint_serves_the_newest_run(make_settings: Callable[..., Settings]) -> None:
    from flows.nightly_eval import nightly_eval
    from flows.reindex import reindex

    settings = make_settings(safety={"enabled": False}, drift={"enabled": False})
    reindex(settings)
    report = nightly_eval(settings)
    port = free_port()
    command = [str(Path(sys.executable).parent / "reasonloop"), "metrics", "--port", str(port)]
    with http_server(command, f"http://127.0.0.1:{port}/metrics", settings.state_dir / "metrics.log", 60,
                     env=reasonloop_env(settings.state_dir)):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
    [sample] = families["reasonloop_accuracy"].samples
    assert sample.value == pytest.approx(report.metrics["accuracy"]) and sample.labels["run_id"] == report.run_id
