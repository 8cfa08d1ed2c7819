"""A model whose replies are not the answer schema, as a new user meets it through the CLI: an endpoint that refuses
response_format, valid JSON of another shape, and empty replies. The run answers what it can, keeps plain-text
answers flagged, and the CLI says why the rest failed and where the full list is, without a terminal."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import pytest
from rich.console import Console
from typer.testing import CliRunner

from reasonloop.cli import app
from reasonloop.cli.common import EXIT_PARTIAL
from reasonloop.evaluation.gate import GateReport, RegressionError, enforce_gate
from reasonloop.settings import Settings

from ..conftest import read_jsonl
from ..support.openai_server import OpenAIServer, Reply
from .test_faults import question_of, scripted_answers

REFUSED = json.dumps({"error": {"message": "response_format is not supported", "type": "invalid_request_error"}})


@pytest.mark.usefixtures("prefect_server")
def test_odd_replies_are_kept_or_explained_and_the_cli_names_the_causes(
        make_settings: Callable[..., Settings], tiny_data: tuple[Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    corpus, questions = tiny_data
    rows = read_jsonl(questions)
    empty, other_shape = {q["question"] for q in rows[:2]}, {q["question"]: q["reference"] for q in rows[2:4]}
    good = scripted_answers(questions)

    def responder(request: dict[str, Any]) -> Reply:
        if "response_format" in request:
            return Reply(status=400, body=REFUSED)
        question = question_of(request)
        if question in empty:
            return Reply(content="")
        if question in other_shape:
            return Reply(content=json.dumps({"response": other_shape[question], "sure": True}))
        return good(request)

    settings = make_settings()
    monkeypatch.setenv("REASONLOOP_STATE_DIR", str(settings.state_dir))
    with OpenAIServer(responder) as server:
        for key, value in {"QUESTIONS__PATH": questions, "CORPUS__PATH": corpus, "SAFETY__ENABLED": "false",
                           "DRIFT__ENABLED": "false", "LLM__PROVIDER": "openai", "LLM__MODEL": "scripted",
                           "LLM__BASE_URL": server.base_url, "LLM__MAX_RETRIES": "0", "CACHE__ENABLED": "false",
                           "GATE__MAX_MISSING_FRACTION": "0.5", "MLFLOW__LOG_TRACES": "false",
                           "QUALITY__DATASETS__SQUAD_SAMPLE__CORPUS": corpus,
                           "QUALITY__DATASETS__SQUAD_SAMPLE__QUESTIONS": questions}.items():
            monkeypatch.setenv(f"REASONLOOP_{key}", str(value))
        result = CliRunner().invoke(app, ["run"])
    assert result.exit_code == EXIT_PARTIAL, result.output
    assert f"partial: 2 of {len(rows)}" in result.output
    assert "  2 x reply did not match ModelAnswer: no JSON object in the reply" in result.output
    failed_at = result.output.split("every one in ")[1].split()[0]
    assert {f["question"] for f in json.loads(Path(failed_at).read_text())} == empty  # the path is the file

    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name("reasonloop-nightly-eval").experiment_id])
    params, metrics = run.data.params, run.data.metrics
    assert params["llm.structured_output"] == "json_schema" and params["llm.structured_output_used"] == "prompt"
    assert "400" in params["llm.structured_output_refused"]
    assert metrics["n_failed"] == 2 and metrics["parse_fallback_rate"] == pytest.approx(2 / (len(rows) - 2))
    review = [json.loads(line) for line in Path(client.download_artifacts(
        run.info.run_id, "eval/review.jsonl", str(tmp_path / "dl"))).read_text().splitlines()]
    kept = {r["question"]: r for r in review if any("plain-text reply" in reason for reason in r["reasons"])}
    assert set(kept) == set(other_shape) and all(kept[q]["answer"] == other_shape[q] for q in kept)

    monkeypatch.setattr("reasonloop.cli.common.console", Console(width=80))
    listed = CliRunner().invoke(app, ["runs"])
    assert listed.exit_code == 0 and run.info.run_id in listed.output
    assert max(len(line) for line in listed.output.splitlines()) <= 80, listed.output


def test_a_gate_failed_on_unanswered_questions_names_their_causes_and_the_file() -> None:
    report = GateReport(baseline_run_id=None, passed=False, missing=["q1", "q2", "q3"], missing_fraction=0.6,
                        missing_failed=True, missing_causes=["3 x reply did not match ModelAnswer: missing field "
                                                             "'answer'"])
    with pytest.raises(RegressionError) as raised:
        enforce_gate(report, "run1", "/state/mlflow/1/run1/artifacts/eval/failed.json")
    message = str(raised.value)
    assert "    3 x reply did not match ModelAnswer: missing field 'answer'" in message
    assert "every one in /state/mlflow/1/run1/artifacts/eval/failed.json" in message
