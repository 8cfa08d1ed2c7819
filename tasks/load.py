"""Reading inputs as tasks: the corpus (bad files become rejects) and strict record sets (question sets, labeled
pairs), from reasonloop/retrieval/sources.py and record_sets.py."""

from __future__ import annotations

from prefect import task

from reasonloop.retrieval import record_sets, sources

load_documents = task(sources.load_documents, name="load-documents")
load_questions = task(record_sets.load_questions, name="load-questions")
load_labeled_pairs = task(record_sets.load_labeled_pairs, name="load-labeled-pairs")
