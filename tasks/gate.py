"""The nightly eval's regression gate as tasks: the baseline run's results read back from MLflow and compared with
this run's (reasonloop/evaluation/gate.py), and failing the flow once the run is logged."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from reasonloop.evaluation import gate
from reasonloop.evaluation.config import GateConfig
from reasonloop.evaluation.gate import GateReport
from reasonloop.evaluation.safety import SafetyReport
from reasonloop.monitoring.runs import baseline_run_id, run_results
from reasonloop.monitoring.tracking import Tracker
from reasonloop.schemas import QuestionResult


@task(name="check-regression", cache_policy=NO_CACHE)
def check_regression(tracker: Tracker, cfg: GateConfig, results: list[QuestionResult],
                     safety: SafetyReport | None = None) -> GateReport:
    """This run against the baseline run (`reasonloop baseline set`), its unanswered share and its safety suite."""
    baseline = baseline_run_id(tracker) if cfg.enabled else None
    return gate.check_regression(cfg, baseline, run_results(tracker, baseline) if baseline else [], results, safety)


enforce_gate = task(gate.enforce_gate, name="enforce-gate")
