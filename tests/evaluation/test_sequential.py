"""The live canary's confidence sequence keeps its false-promotion rate under alpha when it is checked after every
few answers; the fixed-sample interval recomputed at every check (what a naive canary does) does not."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reasonloop.evaluation.sequential import SIGMA, difference, radius, tuned_rho

ALPHA, MARGIN, PLAN_N = 0.05, 0.05, 200
CHECK_EVERY, MAX_N, SIMULATIONS = 10, 1000, 400


def promoted_when_checked(p_production: float, p_candidate: float, bound: str, seed: int = 0) -> float:
    """The share of simulated canaries promoted at some check (every CHECK_EVERY answers per arm, up to MAX_N), with
    Bernoulli scores; `bound`: the confidence sequence, or a one-sided normal interval recomputed at every check."""
    rng = np.random.default_rng(seed)
    production = rng.random((SIMULATIONS, MAX_N)) < p_production
    candidate = rng.random((SIMULATIONS, MAX_N)) < p_candidate
    n = np.arange(CHECK_EVERY, MAX_N + 1, CHECK_EVERY)
    means_p = np.cumsum(production, axis=1)[:, n - 1] / n
    means_c = np.cumsum(candidate, axis=1)[:, n - 1] / n
    if bound == "sequence":
        width = np.array([2 * radius(int(k), ALPHA / 2, PLAN_N) for k in n])
    else:
        spread = np.sqrt((means_p * (1 - means_p) + means_c * (1 - means_c)) / n)
        width = 1.645 * spread  # a one-sided 95% lower bound, as if this check were the only one
    promoted = (means_c - means_p - width) > -MARGIN
    return float(promoted.any(axis=1).mean())


def test_peeking_at_every_check_keeps_false_promotion_under_alpha() -> None:
    # The candidate is exactly `margin` worse: promoting it is the error alpha bounds.
    sequential = promoted_when_checked(0.7, 0.7 - MARGIN, "sequence")
    naive = promoted_when_checked(0.7, 0.7 - MARGIN, "naive")
    assert sequential <= ALPHA
    assert naive > 3 * ALPHA  # peeking at a fixed-sample interval 100 times promotes far more often


def test_a_better_candidate_is_promoted_and_a_worse_one_never() -> None:
    assert promoted_when_checked(0.6, 0.75, "sequence") > 0.95
    assert promoted_when_checked(0.75, 0.5, "sequence") == 0.0


def test_the_sequence_is_tightest_near_its_planned_size() -> None:
    def boundary(rho: float, n: int) -> float:
        v = n * SIGMA**2
        return math.sqrt((v + rho) * math.log((v + rho) / (rho * ALPHA**2)))

    best = tuned_rho(PLAN_N, ALPHA)
    assert all(boundary(best, PLAN_N) < boundary(best * f, PLAN_N) for f in (0.5, 0.8, 1.25, 2.0))
    assert radius(0, ALPHA, PLAN_N) == math.inf
    assert radius(PLAN_N, ALPHA, PLAN_N) > radius(4 * PLAN_N, ALPHA, PLAN_N)


@pytest.mark.parametrize(("candidate", "production", "sign"),
                         [([1.0] * 40, [0.0] * 40, 1), ([0.0] * 40, [1.0] * 40, -1)])
def test_the_difference_bounds_hold_the_estimate_and_stay_in_range(candidate: list[float], production: list[float],
                                                                   sign: int) -> None:
    diff = difference(candidate, production, ALPHA, 40)
    assert diff.estimate == sign
    assert -1.0 <= diff.lower <= diff.estimate <= diff.upper <= 1.0
    assert (diff.lower > 0) if sign > 0 else (diff.upper < 0)
    empty = difference([], production, ALPHA, 40)
    assert (empty.lower, empty.upper) == (-1.0, 1.0)
