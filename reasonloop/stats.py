"""Bootstrap confidence intervals (scipy's), seeded so a run's figures are reproducible."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def mean_ci(values: Sequence[float], confidence: float = 0.95, resamples: int = 2000,
            seed: int = 0) -> tuple[float, float] | None:
    """Percentile-bootstrap CI of the mean. None under two values (no spread to resample); a constant sample's
    interval is the constant itself. For paired data pass the per-pair differences: resampling them is the paired
    bootstrap of the mean difference."""
    from scipy.stats import bootstrap

    data = np.asarray(values, dtype=float)
    if data.size < 2:
        return None
    if np.all(data == data[0]):
        return float(data[0]), float(data[0])
    result = bootstrap((data,), np.mean, n_resamples=resamples, confidence_level=confidence, method="percentile",
                       vectorized=True, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)
