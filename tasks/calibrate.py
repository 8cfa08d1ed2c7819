"""Judge calibration as a task (reasonloop/evaluation/calibration.py)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from reasonloop.evaluation import calibration

calibrate_judge = task(calibration.calibrate_judge, name="calibrate-judge", cache_policy=NO_CACHE)
