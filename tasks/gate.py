"""The nightly eval's regression gate: compare the run with its baseline, and fail the flow on a regression."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from reasonloop.errors import ReasonloopError
from reasonloop.gate import GateReport, compare_runs
from reasonloop.schemas import QuestionResult
from reasonloop.settings import Settings
from reasonloop.tracking import baseline_run_id, run_results


class RegressionError(ReasonloopError):
    """The nightly eval regressed against its baseline beyond tolerance, significantly."""


@task(name="check-regression", cache_policy=NO_CACHE)
def check_regression(settings: Settings, results: list[QuestionResult]) -> GateReport:
    """This run's results against the baseline run's (read back from MLflow); passes when no baseline is set or
    the gate is off."""
    if not settings.gate.enabled:
        return GateReport(baseline_run_id=None, passed=True, note="the gate is off (gate.enabled)")
    baseline = baseline_run_id(settings)
    return compare_runs(baseline, run_results(settings, baseline) if baseline else [], results, settings.gate)


@task(name="enforce-gate")
def enforce_gate(report: GateReport, run_id: str) -> None:
    """Fail the flow (and the CLI, exit 1) when the gate failed; the run and its report are already logged."""
    if report.passed:
        return
    lines = [f"{c.metric}: {c.baseline:.3f} -> {c.current:.3f} (worse by {c.worse_by:.3f} > {c.tolerance}; "
             f"{c.n_pairs} questions, interval of the change [{c.ci_low:.3f}, {c.ci_high:.3f}])"
             for c in report.checks if c.regressed]
    raise RegressionError(f"run {run_id} regressed against baseline {report.baseline_run_id}:\n  " + "\n  ".join(lines)
                          + f"\n{len(report.regressions)} questions got worse: see eval/regressions.json in the run")
