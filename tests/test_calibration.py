"""Judge calibration against human labels: the agreement arithmetic on hand-made cases, labeled-pair loading, and
`reasonloop judge calibrate` on the SummEdits slice in data/ (heuristic judge, logged to MLflow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from reasonloop.cli import app
from reasonloop.errors import InputError
from reasonloop.schemas import Verdict
from tasks.calibrate import agreement
from tasks.load import load_labeled_pairs

from .conftest import ROOT

SAMPLE = ROOT / "data" / "judge" / "summedits_sample.jsonl"


def test_agreement_arithmetic_on_a_hand_made_case() -> None:
    labels = [1, 1, 0, 0, 0, 1]
    verdicts = [Verdict(hallucinated=False, grounded_fraction=1.0), Verdict(hallucinated=True, grounded_fraction=0.5),
                Verdict(hallucinated=True, grounded_fraction=0.0), Verdict(hallucinated=True, grounded_fraction=0.4),
                Verdict(hallucinated=False, grounded_fraction=0.8), Verdict(judge_error="unparseable verdict: ...")]
    found = agreement("all", labels, verdicts)
    # scored: labels 1 1 0 0 0, predicted 1 0 0 0 1 -> recall on 1s 1/2, on 0s 2/3 -> balanced (1/2 + 2/3) / 2
    assert found.balanced_accuracy == pytest.approx((1 / 2 + 2 / 3) / 2)
    # kappa: observed agreement 3/5, chance (2/5 * 2/5 + 3/5 * 3/5) = 13/25 -> (15/25 - 13/25) / (12/25) = 1/6
    assert found.cohen_kappa == pytest.approx(1 / 6)
    # AUROC of grounded fractions: positives {1.0, 0.5} vs negatives {0.0, 0.4, 0.8}: 5 of 6 pairs ordered right
    assert found.auroc == pytest.approx(5 / 6)
    assert found.n == 6 and found.n_judge_errors == 1  # the judge error is counted, not scored
    assert agreement("one-class", [1, 1], verdicts[:2]).balanced_accuracy is None


def test_labeled_pairs_load_strictly(tmp_path: Path) -> None:
    pairs = load_labeled_pairs.fn([SAMPLE])
    assert len(pairs) == 102 and {p.domain for p in pairs} == {"sales_call", "scitldr", "qmsumm"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "doc": "d", "summary": "s", "label": 2}) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.jsonl:1: .*field .label."):
        load_labeled_pairs.fn([bad])


@pytest.mark.slow
def test_the_calibrate_command_scores_the_heuristic_judge_and_logs_it(tmp_path: Path) -> None:
    env = {"REASONLOOP_STATE_DIR": str(tmp_path / "state")}
    result = CliRunner().invoke(app, ["judge", "calibrate"], env=env)
    assert result.exit_code == 0, result.output
    assert "heuristic-v3" in result.output and "sales_call" in result.output
    client = MlflowClient(f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}")
    [experiment] = [e for e in client.search_experiments() if e.name.endswith("judge-calibration")]
    [run] = client.search_runs([experiment.experiment_id])
    metrics = run.data.metrics
    assert run.data.params["judge.version"] == "heuristic-v3" and metrics["all.n"] == 102
    assert 0.0 <= metrics["all.balanced_accuracy"] <= 1.0 and "all.auroc" in metrics
    table = json.loads(Path(client.download_artifacts(run.info.run_id, "calibration/pairs.json")).read_text())
    assert len(table["data"]) == 102
