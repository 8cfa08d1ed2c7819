"""DPO dataset build tasks over reasonloop/feedback: feedback in (validated, bad rows quarantined), preference pairs
out (built, cleaned, split, exported under their content hash)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from reasonloop.feedback import build, preferences, records, screening

read_feedback = task(screening.read_feedback, name="load-feedback", cache_policy=NO_CACHE)
trace_feedback = task(records.feedback_from_traces, name="trace-feedback", cache_policy=NO_CACHE)
feedback_pairs = task(build.feedback_pairs, name="build-pairs", cache_policy=NO_CACHE)
rlaif_pairs = task(build.rlaif_pairs, name="rlaif-pairs", cache_policy=NO_CACHE)
eval_question_sets = task(build.eval_question_sets, name="eval-question-sets", cache_policy=NO_CACHE)
clean_and_split = task(preferences.build_dataset, name="clean-and-split", cache_policy=NO_CACHE)
export_preferences = task(build.export_preferences, name="export-dataset", cache_policy=NO_CACHE)
