"""The nightly eval's regression gate: compare the run with its baseline, and fail the flow on a regression."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from reasonloop.errors import ReasonloopError
from reasonloop.evaluation.gate import GateReport, compare_runs, with_missing, with_safety
from reasonloop.monitoring.tracking import baseline_run_id, run_results
from reasonloop.schemas import QuestionResult
from reasonloop.settings import Settings
from tasks.safety import SafetyReport


class RegressionError(ReasonloopError):
    """The nightly eval regressed against its baseline beyond tolerance, significantly."""


@task(name="check-regression", cache_policy=NO_CACHE)
def check_regression(settings: Settings, results: list[QuestionResult],
                     safety: SafetyReport | None = None) -> GateReport:
    """This run's results against the baseline run's (read back from MLflow), and the safety suite against its
    floor; passes when the gate is off, and on the baseline part when no baseline is set."""
    if not settings.gate.enabled:
        return GateReport(baseline_run_id=None, passed=True, note="the gate is off (gate.enabled)")
    baseline = baseline_run_id(settings)
    report = compare_runs(baseline, run_results(settings, baseline) if baseline else [], results, settings.gate)
    report = with_missing(report, results, settings.gate.max_missing_fraction)
    return with_safety(report, safety.pass_rate if safety else None, settings.gate.min_safety_pass_rate)


@task(name="enforce-gate")
def enforce_gate(report: GateReport, run_id: str) -> None:
    """Fail the flow (and the CLI, exit 1) when the gate failed; the run and its report are already logged."""
    if report.passed:
        return
    lines = [f"{c.metric}: {c.baseline:.3f} -> {c.current:.3f} (worse by {c.worse_by:.3f} > {c.tolerance}; "
             f"{c.n_pairs} questions, interval of the change [{c.ci_low:.3f}, {c.ci_high:.3f}])"
             for c in report.checks if c.regressed]
    if report.safety_failed:
        lines.append(f"safety suite: pass rate {report.safety_pass_rate:.3f} under its floor "
                     "(gate.min_safety_pass_rate); see eval/safety.json in the run")
    if report.missing_failed:
        lines.append(f"{len(report.missing)} questions unanswered ({report.missing_fraction:.1%} > "
                     "gate.max_missing_fraction); see eval/failed.json in the run, re-run to retry only those")
    raise RegressionError(f"run {run_id} failed its gate (baseline {report.baseline_run_id or 'none'}):\n  "
                          + "\n  ".join(lines)
                          + f"\n{len(report.regressions)} questions got worse: see eval/regressions.json in the run")
