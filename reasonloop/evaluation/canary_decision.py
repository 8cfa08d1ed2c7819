"""A live canary's decision from its judged traffic: promote the candidate, keep collecting, or roll it back.

Guards first, on the sessions each arm served: once both arms have `min_requests` answers, a candidate failing more
often than production by more than `max_error_rate_increase`, or slower at the median by more than
`max_latency_ratio` (and `min_latency_gap_s`), is rolled back; these err on production's side. Then quality: the
difference of the arms' judged scores (`metric`) has a confidence sequence (reasonloop/evaluation/sequential.py),
valid however often the check runs. Surely worse by more than `margin`: roll back; surely no worse than that:
promote (false promotion at most `alpha`); neither by `max_duration`: roll back as inconclusive."""

from __future__ import annotations

from typing import Literal

from reasonloop.evaluation.config import LiveCanaryConfig
from reasonloop.evaluation.sequential import Difference, difference
from reasonloop.schemas import LiveRecord, Record, Verdict
from reasonloop.text import parse_duration

Action = Literal["promote", "rollback", "keep", "stop"]
ARMS = ("production", "candidate")


class ArmFigures(Record):
    n: int
    n_failed: int
    error_rate: float
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    n_scored: int = 0
    quality: float | None = None  # the mean judged score of its answers
    n_rated: int = 0
    thumbs_up_rate: float | None = None


class CanaryDecision(Record):
    action: Action
    reason: str
    metric: str
    production: ArmFigures
    candidate: ArmFigures
    difference: Difference  # candidate - production on `metric`


def score_of(verdict: Verdict | None, metric: str) -> float | None:
    """An answer's judged score on `metric`; None when it was not judged (it failed, or the judge did)."""
    if verdict is None or verdict.judge_error is not None:
        return None
    value = verdict.reasoning_quality if metric == "reasoning_quality" else getattr(verdict, metric)
    return None if value is None else float(value)


def quantile(values: list[float], q: float) -> float | None:
    """The q-quantile (nearest rank) of the values, None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def arm_figures(records: list[LiveRecord], scores: list[float]) -> ArmFigures:
    failed = sum(r.result.answer.error is not None for r in records)
    latencies = [r.result.answer.latency_s for r in records if r.result.answer.error is None]
    rated = [r.rating for r in records if r.rating is not None]
    return ArmFigures(n=len(records), n_failed=failed, error_rate=failed / len(records) if records else 0.0,
                      latency_p50_s=quantile(latencies, 0.5), latency_p95_s=quantile(latencies, 0.95),
                      n_scored=len(scores), quality=sum(scores) / len(scores) if scores else None,
                      n_rated=len(rated), thumbs_up_rate=sum(rated) / len(rated) if rated else None)


def decide(cfg: LiveCanaryConfig, records: list[LiveRecord], age_s: float) -> CanaryDecision:
    """The decision on a canary's judged traffic so far (`records`: both arms, verdicts on their results)."""
    scores = {arm: [s for r in records if r.arm == arm if (s := score_of(r.result.verdict, cfg.metric)) is not None]
              for arm in ARMS}
    figures = {arm: arm_figures([r for r in records if r.arm == arm], scores[arm]) for arm in ARMS}
    production, candidate = figures["production"], figures["candidate"]
    diff = difference(scores["candidate"], scores["production"], cfg.alpha, cfg.plan_n)

    def decision(action: Action, reason: str) -> CanaryDecision:
        return CanaryDecision(action=action, reason=reason, metric=cfg.metric, production=production,
                              candidate=candidate, difference=diff)

    interval = (f"{cfg.metric} candidate - production {diff.estimate:+.3f}, bounds "
                f"[{diff.lower:+.3f}, {diff.upper:+.3f}]")
    if min(production.n, candidate.n) >= cfg.min_requests:
        if candidate.error_rate - production.error_rate > cfg.max_error_rate_increase:
            return decision("rollback", f"the candidate failed {candidate.error_rate:.1%} of its requests, production "
                                        f"{production.error_rate:.1%} (canary.live.max_error_rate_increase "
                                        f"{cfg.max_error_rate_increase:.1%})")
        slow, fast = candidate.latency_p50_s, production.latency_p50_s
        if slow is not None and fast is not None and slow > cfg.max_latency_ratio * fast \
                and slow - fast > cfg.min_latency_gap_s:
            return decision("rollback", f"the candidate's median latency {slow:.3f} s is over "
                                        f"{cfg.max_latency_ratio}x production's {fast:.3f} s")
    if min(production.n_scored, candidate.n_scored) >= cfg.min_requests:
        if diff.upper < -cfg.margin:
            return decision("rollback", f"the candidate is worse by more than the margin {cfg.margin}: {interval}")
        if diff.lower > -cfg.margin:
            return decision("promote", f"the candidate is no worse than production minus {cfg.margin}, at "
                                       f"1 - {cfg.alpha} confidence however often checked: {interval}")
    if age_s > parse_duration(cfg.max_duration):
        return decision("rollback", f"no decision within canary.live.max_duration {cfg.max_duration} "
                                    f"(inconclusive): {interval}")
    return decision("keep", f"not yet clear after {candidate.n_scored} candidate and {production.n_scored} production "
                            f"judged answers (at least {cfg.min_requests} each before a decision); {interval}")
