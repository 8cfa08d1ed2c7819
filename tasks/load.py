"""Reading strict record sets as tasks (question sets, labeled pairs; reasonloop/retrieval/record_sets.py); the
corpus is read by the reindex's batch tasks (tasks/index.py)."""

from __future__ import annotations

from prefect import task

from reasonloop.retrieval import record_sets

load_questions = task(record_sets.load_questions, name="load-questions")
load_labeled_pairs = task(record_sets.load_labeled_pairs, name="load-labeled-pairs")
