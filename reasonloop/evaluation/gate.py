"""The regression gate: a nightly eval against its baseline run, question by question.

Each gated metric is a mean of per-question values (accuracy: 1 when the judge says correct, 0 when not or when
the question failed; grounding: the grounded fraction; hallucination: 1 when a claim is unsupported; schema
validity: 1 when every reply matched its prompt's output schema, so a template change that breaks the output
format fails the gate). The gate
pairs the questions both runs scored, resamples the per-question differences (paired bootstrap), and fails a
metric when it worsened by more than its tolerance and the interval of the difference excludes zero: a real
drop, not noise. Judge errors score nothing on either side."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import Field

from reasonloop.errors import ReasonloopError
from reasonloop.evaluation.config import GateConfig, GateMetricName
from reasonloop.evaluation.metrics import failure_causes
from reasonloop.evaluation.safety import SafetyReport
from reasonloop.evaluation.stats import mean_ci
from reasonloop.schemas import QuestionResult, Record, Verdict


def _verdict(result: QuestionResult) -> Verdict | None:
    """The verdict on an answer the judge scored; None for a failed question or a judge error."""
    judged = result.answer.error is None and result.verdict is not None and result.verdict.judge_error is None
    return result.verdict if judged else None


def _accuracy(result: QuestionResult) -> float | None:
    if result.answer.error is not None:
        return 0.0  # a failed question is a wrong answer, as in the run's accuracy
    verdict = _verdict(result)
    return None if verdict is None or not verdict.referenced else float(verdict.correct)


def _judged_value(field: Callable[[Verdict], float | bool | None]) -> Callable[[QuestionResult], float | None]:
    def value(result: QuestionResult) -> float | None:
        verdict = _verdict(result)
        found = field(verdict) if verdict is not None else None
        return None if found is None else float(found)
    return value


PER_QUESTION: dict[GateMetricName, Callable[[QuestionResult], float | None]] = {
    "accuracy": _accuracy,
    "grounding_rate": _judged_value(lambda v: v.grounded_fraction),
    "hallucination_rate": _judged_value(lambda v: v.hallucinated),
    "token_f1": _judged_value(lambda v: v.token_f1),
    "answer_relevance": _judged_value(lambda v: v.relevance),
    "reasoning_quality": _judged_value(lambda v: v.reasoning_quality),
    "context_precision": lambda r: r.context_precision,
    "recall_at_k": lambda r: r.recall_at_k,
    "schema_validity": lambda r: None if r.answer.cache_hit or r.answer.schema_valid is None
    else float(r.answer.schema_valid),
}


class MetricCheck(Record):
    """One metric, current run vs baseline, over the questions both scored."""

    metric: str
    n_pairs: int
    baseline: float | None = None
    current: float | None = None
    worse_by: float | None = Field(default=None, description="how much worse the current run is (< 0: better)")
    ci_low: float | None = Field(default=None, description="interval of mean(current - baseline)")
    ci_high: float | None = None
    tolerance: float
    regressed: bool = False
    note: str = ""


class Regression(Record):
    """A question that got worse on a regressed metric, with both runs' answers."""

    question_id: str
    question: str
    metric: str
    baseline_answer: str
    current_answer: str
    baseline_value: float
    current_value: float


class GateReport(Record):
    baseline_run_id: str | None
    passed: bool
    checks: list[MetricCheck] = Field(default_factory=list)
    regressions: list[Regression] = Field(default_factory=list)
    note: str = ""
    safety_pass_rate: float | None = None
    safety_failed: bool = False
    missing: list[str] = Field(default_factory=list, description="questions without an answer (failed): wrong for "
                               "accuracy, left out of the other metrics")
    missing_fraction: float = 0.0
    missing_failed: bool = Field(default=False, description="more questions unanswered than gate.max_missing_fraction")
    missing_causes: list[str] = Field(default_factory=list, description="why they failed, commonest first")

    def summary(self) -> str:
        failed = [f"{c.metric} regressed" for c in self.checks if c.regressed]
        if self.safety_failed:
            failed.append(f"safety pass rate {self.safety_pass_rate:.3f} under its floor")
        if self.missing_failed:
            failed.append(f"{len(self.missing)} questions unanswered ({self.missing_fraction:.1%})")
        if failed:
            return f"FAILED: {', '.join(failed)}"
        unanswered = f"; {len(self.missing)} unanswered, counted wrong" if self.missing else ""
        if self.baseline_run_id is None:
            return f"passed ({self.note}{unanswered})"
        return f"passed vs baseline {self.baseline_run_id[:12]}{unanswered}"


def with_safety(report: GateReport, pass_rate: float | None, floor: float) -> GateReport:
    """The gate with the safety suite's absolute floor applied (no baseline needed)."""
    if pass_rate is None:
        return report
    failed = pass_rate < floor
    return report.model_copy(update={"safety_pass_rate": pass_rate, "safety_failed": failed,
                                     "passed": report.passed and not failed})


def with_missing(report: GateReport, results: list[QuestionResult], max_fraction: float) -> GateReport:
    """The gate with the unanswered questions named: each already counts as wrong for accuracy; beyond
    `max_fraction` of the run the gate fails, since what was answered no longer stands for the question set."""
    unanswered = [r for r in results if r.answer.error is not None]
    fraction = len(unanswered) / len(results) if results else 0.0
    failed = fraction > max_fraction
    return report.model_copy(update={"missing": [r.question.id for r in unanswered], "missing_fraction": fraction,
                                     "missing_failed": failed, "passed": report.passed and not failed,
                                     "missing_causes": failure_causes([r.answer.error or "" for r in unanswered])})


def check_metric(metric: GateMetricName, pairs: list[tuple[QuestionResult, QuestionResult]],
                 cfg: GateConfig) -> tuple[MetricCheck, list[Regression]]:
    """One metric's decision over (baseline, current) pairs of the same question."""
    rule = cfg.metrics[metric]
    value = PER_QUESTION[metric]
    scored = [(b, c, value(b), value(c)) for b, c in pairs]
    scored = [(b, c, vb, vc) for b, c, vb, vc in scored if vb is not None and vc is not None]
    if len(scored) < cfg.min_pairs:
        note = f"only {len(scored)} questions scored in both runs (< {cfg.min_pairs}): no decision"
        return MetricCheck(metric=metric, n_pairs=len(scored), tolerance=rule.tolerance, note=note), []
    differences = [vc - vb for _, _, vb, vc in scored]
    sign = 1.0 if rule.higher_is_better else -1.0
    baseline = sum(vb for _, _, vb, _ in scored) / len(scored)
    current = sum(vc for _, _, _, vc in scored) / len(scored)
    worse_by = sign * (baseline - current)
    interval = mean_ci(differences, cfg.confidence, cfg.resamples, cfg.seed)
    low, high = interval if interval is not None else (None, None)
    significant = low is not None and high is not None and (high < 0 if rule.higher_is_better else low > 0)
    regressed = worse_by > rule.tolerance and significant
    check = MetricCheck(metric=metric, n_pairs=len(scored), baseline=baseline, current=current, worse_by=worse_by,
                        ci_low=low, ci_high=high, tolerance=rule.tolerance, regressed=regressed)
    if not regressed:
        return check, []
    worse = [Regression(question_id=c.question.id, question=c.question.question, metric=metric,
                        baseline_answer=b.answer.answer or f"(failed: {b.answer.error})",
                        current_answer=c.answer.answer or f"(failed: {c.answer.error})",
                        baseline_value=vb, current_value=vc)
             for b, c, vb, vc in scored if sign * (vb - vc) > 0]
    return check, worse


def compare_runs(baseline_run_id: str | None, baseline: list[QuestionResult], current: list[QuestionResult],
                 cfg: GateConfig) -> GateReport:
    """The gate's decision for `current` against `baseline` (no baseline: passes and says why)."""
    if baseline_run_id is None:
        return GateReport(baseline_run_id=None, passed=True,
                          note="no baseline set: `reasonloop baseline set RUN_ID` to gate the next runs")
    by_id = {r.question.id: r for r in baseline}
    pairs = [(by_id[r.question.id], r) for r in current if r.question.id in by_id]
    results = [check_metric(metric, pairs, cfg) for metric in cfg.metrics]
    checks = [check for check, _ in results]
    return GateReport(baseline_run_id=baseline_run_id, passed=not any(c.regressed for c in checks), checks=checks,
                      regressions=[r for _, worse in results for r in worse],
                      note=f"{len(pairs)} of {len(current)} questions also in the baseline")


def check_regression(cfg: GateConfig, baseline_run_id: str | None, baseline: list[QuestionResult],
                     results: list[QuestionResult], safety: SafetyReport | None = None) -> GateReport:
    """This run's results against the baseline run's, the unanswered share against its bound, and the safety suite
    against its floor; passes when the gate is off, and on the baseline part when no baseline is set."""
    if not cfg.enabled:
        return GateReport(baseline_run_id=None, passed=True, note="the gate is off (gate.enabled)")
    report = compare_runs(baseline_run_id, baseline, results, cfg)
    report = with_missing(report, results, cfg.max_missing_fraction)
    return with_safety(report, safety.pass_rate if safety else None, cfg.min_safety_pass_rate)


class RegressionError(ReasonloopError):
    """The nightly eval regressed against its baseline beyond tolerance, significantly."""


def enforce_gate(report: GateReport, run_id: str, failed_at: str = "") -> None:
    """Fail the flow (and the CLI, exit 1) when the gate failed; the run and its report are already logged.
    `failed_at`: where the unanswered questions' list is (the artifact's location when known)."""
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
                     "gate.max_missing_fraction); re-run to retry only those. Causes:")
        lines += [f"  {cause}" for cause in report.missing_causes]
        lines.append(f"  every one in {failed_at or 'eval/failed.json in the run'}")
    raise RegressionError(f"run {run_id} failed its gate (baseline {report.baseline_run_id or 'none'}):\n  "
                          + "\n  ".join(lines)
                          + f"\n{len(report.regressions)} questions got worse: see eval/regressions.json in the run")
