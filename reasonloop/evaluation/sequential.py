"""Confidence sequences: intervals for a mean that hold at every sample size at once, so a live canary checked every
half hour may act the first time its interval is clear of the bound and still promote a worse candidate with
probability at most alpha. A fixed-sample interval recomputed at every check does not: peeking inflates its error
(tests/evaluation/test_sequential.py measures both).

The boundary is the two-sided normal mixture of Howard, Ramdas, McAuliffe and Sekhon (2021, "Time-uniform,
nonparametric, nonasymptotic confidence sequences"), for observations in [0, 1] (sub-Gaussian with sigma 1/2):
|sum of deviations| < sqrt((v + rho) log((v + rho) / (rho alpha^2))) with v = n sigma^2, for all n, with
probability 1 - alpha. `rho` sets where it is tightest: at `plan_n` observations."""

from __future__ import annotations

import math

from pydantic import Field

from reasonloop.schemas import Record

SIGMA = 0.5  # any variable in [0, 1] is sub-Gaussian with this scale (Hoeffding)


class Difference(Record):
    """candidate mean - production mean, with bounds that hold jointly at every check."""

    estimate: float
    lower: float = Field(ge=-1.0, le=1.0)
    upper: float = Field(ge=-1.0, le=1.0)


def tuned_rho(plan_n: int, alpha: float) -> float:
    """The mixture scale whose boundary is narrowest at `plan_n` observations. Minimising the boundary over rho at
    fixed v gives x - log x = 1 + 2 log(1/alpha) for x = (v + rho) / rho, solved here by bisection (x > 1)."""
    target, low, high = 1 + 2 * math.log(1 / alpha), 1.0, 4 * (1 + 2 * math.log(1 / alpha)) + 10
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if mid - math.log(mid) < target else (low, mid)
    return plan_n * SIGMA**2 / (low - 1)


def radius(n: int, alpha: float, plan_n: int) -> float:
    """Half-width of a 1 - alpha confidence sequence for the mean of n observations in [0, 1] (inf when n is 0)."""
    if n <= 0:
        return math.inf
    v, rho = n * SIGMA**2, tuned_rho(plan_n, alpha)
    return math.sqrt((v + rho) * math.log((v + rho) / (rho * alpha**2))) / n


def difference(candidate: list[float], production: list[float], alpha: float, plan_n: int) -> Difference:
    """candidate - production: each arm's mean has a 1 - alpha/2 sequence, so both hold together with probability
    1 - alpha and so does the difference of their ends (the arms are independent sessions, of any sizes)."""
    if not candidate or not production:
        return Difference(estimate=0.0, lower=-1.0, upper=1.0)
    estimate = sum(candidate) / len(candidate) - sum(production) / len(production)
    width = radius(len(candidate), alpha / 2, plan_n) + radius(len(production), alpha / 2, plan_n)
    return Difference(estimate=estimate, lower=max(-1.0, estimate - width), upper=min(1.0, estimate + width))
