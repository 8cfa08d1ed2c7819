"""Judge calibration against human labels: the agreement arithmetic on hand-made cases, labeled-pair loading, and
`reasonloop judge calibrate` on the SummEdits slice in data/ (heuristic judge, logged to MLflow)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow import MlflowClient
from rich.console import Console
from typer.testing import CliRunner

from reasonloop.cli import app
from reasonloop.errors import InputError
from reasonloop.evaluation.calibration import Agreement, agreement, floor_failures
from reasonloop.retrieval.record_sets import load_labeled_pairs
from reasonloop.schemas import Verdict
from reasonloop.settings import Settings

from ..conftest import ROOT, write_jsonl

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
    pairs = load_labeled_pairs([SAMPLE])
    assert len(pairs) == 102 and {p.domain for p in pairs} == {"sales_call", "scitldr", "qmsumm"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "doc": "d", "summary": "s", "label": 2}) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.jsonl:1: .*field .label."):
        load_labeled_pairs([bad])


@pytest.mark.slow
def test_the_calibrate_command_scores_the_heuristic_judge_and_logs_it(tmp_path: Path) -> None:
    env = {"REASONLOOP_STATE_DIR": str(tmp_path / "state")}
    result = CliRunner().invoke(app, ["judge", "calibrate"], env=env)
    assert result.exit_code == 0, result.output
    assert "heuristic-v5" in result.output and "sales_call" in result.output
    client = MlflowClient(f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}")
    [experiment] = [e for e in client.search_experiments() if e.name.endswith("judge-calibration")]
    [run] = client.search_runs([experiment.experiment_id])
    metrics = run.data.metrics
    assert run.data.params["judge.version"] == "heuristic-v5" and metrics["all.n"] == 102
    assert 0.0 <= metrics["all.balanced_accuracy"] <= 1.0 and "all.auroc" in metrics
    table = json.loads(Path(client.download_artifacts(run.info.run_id, "calibration/pairs.json")).read_text())
    assert len(table["data"]) == 102


def test_the_floor_is_checked_over_all_pairs() -> None:
    slices = [Agreement(slice="sales_call", n=10, n_judge_errors=0, balanced_accuracy=0.9, cohen_kappa=0.8),
              Agreement(slice="all", n=30, n_judge_errors=0, balanced_accuracy=0.62, cohen_kappa=0.1)]
    assert floor_failures(slices, {"balanced_accuracy": 0.6, "cohen_kappa": 0.2}) == ["cohen_kappa 0.100 < 0.2 "
                                                                                       "(all, 30 pairs)"]
    assert floor_failures(slices[:1], {"balanced_accuracy": 0.6}) == []  # one domain: its own slice
    one_class = [Agreement(slice="all", n=3, n_judge_errors=0)]
    assert floor_failures(one_class, {"auroc": 0.5}) == ["auroc undefined < 0.5 (all, 3 pairs)"]


@pytest.mark.usefixtures("prefect_server")
def test_a_judge_under_its_floor_cannot_be_promoted(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    """Two candidate judge models on a scripted server: one agrees with the human labels, one contradicts them.
    Only the first is promoted (the pointer names it); the refusal leaves production's judge as it was."""
    from ..support.openai_server import OpenAIServer, Reply, user_text

    pairs = load_labeled_pairs([SAMPLE])[:40]
    data = write_jsonl(tmp_path / "labeled.jsonl", [p.model_dump() for p in pairs])
    label = {p.summary: p.label for p in pairs}

    def responder(request: dict) -> Reply:
        summary = user_text(request).split("<answer>")[1].split("</answer>")[0]
        consistent = bool(label[summary]) == (request["model"] == "good-judge")
        return Reply(content=json.dumps({"correct": True, "score": 1.0,
                                         "claims": [{"claim": summary[:40], "supported": consistent}]}))

    with OpenAIServer(responder) as server:
        settings = make_settings(judge={"provider": "openai", "model": "prod-judge", "base_url": server.base_url,
                                        "max_retries": 0, "calibration_data": [data]})
        from flows.calibrate_judge import promote_judge

        bad = promote_judge("bad-judge", settings)
        assert not settings.pointer_path.exists()
        with pytest.MonkeyPatch.context() as patch:  # the CLI loads settings itself: hand it these
            patch.setattr("reasonloop.cli.common.load_settings", lambda *a, **k: settings)
            patch.setattr("reasonloop.cli.common.console", Console(width=240))
            promoted = CliRunner().invoke(app, ["judge", "promote", "--candidate", "good-judge"])
            history = CliRunner().invoke(app, ["judge", "history"])
    assert promoted.exit_code == 0 and "promoted" in promoted.output, promoted.output
    assert "good-judge" in history.output and "bad-judge" in history.output and "below" in history.output
    good = client_report(settings, "good-judge")
    assert bad.metrics["promoted"] == 0.0 and bad.metrics["floor_passed"] == 0.0
    assert bad.metrics["all.balanced_accuracy"] == 0.0 and "refused" in bad.rows["decision"]
    assert good.data.metrics["floor_passed"] == 1.0 and good.data.metrics["all.balanced_accuracy"] == 1.0
    assert yaml.safe_load(settings.pointer_path.read_text()) == {"judge": {"model": "good-judge"}}
    client = MlflowClient(settings.mlflow_tracking_uri)
    tags = [client.get_run(r).data.tags for r in (bad.run_id, good.info.run_id)]
    assert [t["reasonloop.judge_promotion"] for t in tags] == ["refused", "promoted"]
    assert [t["judge.model"] for t in tags] == ["bad-judge", "good-judge"]
    assert tags[0]["reasonloop.judge_floor"].startswith("below: balanced_accuracy 0.000 < 0.6")


def client_report(settings: Settings, model: str) -> Any:
    """The newest calibration run of a judge model."""
    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("reasonloop-judge-calibration")
    return client.search_runs([experiment.experiment_id], filter_string=f"tags.`judge.model` = '{model}'",
                              order_by=["attributes.start_time DESC"])[0]
