"""The CLI as a user meets it: help, config show, errors, runs read back from MLflow."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from reasonloop.cli import app

from ..conftest import ROOT

runner = CliRunner()


@pytest.fixture(autouse=True)
def restore_environ() -> Iterator[None]:
    """The CLI points PREFECT_HOME/MLFLOW_TRACKING_URI at the state folder; undo that after each test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_help_is_fast_because_heavy_libraries_stay_unimported() -> None:
    code = ("import sys; from typer.testing import CliRunner; from reasonloop.cli import app; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
            "heavy = ['prefect', 'mlflow', 'chromadb', 'sentence_transformers', 'torch', 'great_expectations']; "
            "print([m for m in heavy if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    listed = {line.split()[1] for line in result.output.splitlines() if line.startswith("│ ") and len(line.split()) > 2}
    assert {"reindex", "eval", "run", "config", "runs", "ui", "index"} <= listed


def test_config_show_masks_the_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-SECRET-9876")
    result = runner.invoke(app, ["--profile", "openai", "config", "show"])
    assert result.exit_code == 0, result.output
    assert "provider: openai" in result.output and "api_key: (set in OPENAI_API_KEY)" in result.output
    as_json = runner.invoke(app, ["config", "show", "--json"])
    assert as_json.exit_code == 0 and '"api_key": "(set in OPENAI_API_KEY)"' in as_json.output
    assert "SECRET" not in result.output + as_json.output and "9876" not in result.output + as_json.output


def test_invalid_config_exits_2_naming_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REASONLOOP_JUDGE__PROVIDER", "oracle")
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 2
    assert "judge.provider" in result.output and "'heuristic' or 'openai'" in result.output


def test_runs_reads_back_from_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    from reasonloop.providers import build_tracker
    from reasonloop.settings import load_settings

    monkeypatch.setenv("REASONLOOP_STATE_DIR", str(tmp_path))
    assert "no runs yet" in runner.invoke(app, ["runs"]).output
    settings = load_settings()
    with mlflow.start_run(experiment_id=build_tracker(settings).ensure_experiment("nightly-eval"),
                          tags={"reasonloop.flow": "nightly-eval"}) as run:
        mlflow.log_params({"llm.provider": "extractive", "prompt.reasoning": "chain_of_thought@v1"})
        mlflow.log_metrics({"accuracy": 0.625, "grounding_rate": 1.0})
    monkeypatch.setattr("reasonloop.cli.common.console", Console(width=250))
    result = runner.invoke(app, ["runs", "--limit", "5"])
    assert result.exit_code == 0, result.output
    assert run.info.run_id in result.output and "0.625" in result.output and "chain_of_thought@v1" in result.output


def test_a_failing_flow_prints_one_clear_error(tmp_path: Path) -> None:
    """A real subprocess, as a user runs it: no traceback, exit 1, the message names the file."""
    env = {**os.environ, "REASONLOOP_STATE_DIR": str(tmp_path / "state"),
           "REASONLOOP_QUESTIONS__PATH": str(tmp_path / "missing.jsonl")}
    result = subprocess.run([sys.executable, "-m", "reasonloop.cli", "eval"], capture_output=True, text=True,
                            cwd=ROOT, env=env, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "missing.jsonl: question set not found" in result.stderr
    assert "Traceback" not in result.stderr
