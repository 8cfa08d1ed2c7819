"""Bootstrap confidence intervals (scipy's), seeded so a run's figures are reproducible."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np


def bootstrap_ci(samples: Sequence[Sequence[float]], statistic: Callable[..., np.ndarray], confidence: float = 0.95,
                 resamples: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    """Percentile-bootstrap CI of `statistic(*samples, axis=-1)`; several samples are resampled as pairs (the rows
    of one question stay together). None under two observations or when the interval is undefined (NaN); a
    constant statistic's interval is the constant itself."""
    from scipy.stats import bootstrap

    data = tuple(np.asarray(s, dtype=float) for s in samples)
    if data[0].size < 2:
        return None
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # empty resamples of a NaN-holding sample: NaN, handled below
        if all(np.all(d == d[0]) for d in data):
            value = float(statistic(*data, axis=-1))
            return (value, value) if np.isfinite(value) else None
        result = bootstrap(data, statistic, n_resamples=resamples, confidence_level=confidence, method="percentile",
                           vectorized=True, paired=len(data) > 1, rng=np.random.default_rng(seed))
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return (low, high) if np.isfinite(low) and np.isfinite(high) else None


def mean_ci(values: Sequence[float], confidence: float = 0.95, resamples: int = 2000,
            seed: int = 0) -> tuple[float, float] | None:
    """CI of the mean. For paired data pass the per-pair differences: resampling them is the paired bootstrap of
    the mean difference."""
    return bootstrap_ci((values,), np.mean, confidence, resamples, seed)


def percentile_ci(values: Sequence[float], q: float, confidence: float = 0.95, resamples: int = 2000,
                  seed: int = 0) -> tuple[float, float] | None:
    """CI of the q-th percentile (latency p50 / p95)."""
    return bootstrap_ci((values,), lambda x, axis: np.percentile(x, q, axis=axis), confidence, resamples, seed)
