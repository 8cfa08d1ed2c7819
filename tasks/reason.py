"""Answering as tasks (reasonloop/reasoning/answering.py). The model calls retry inside the endpoint (one budget for
every transient failure), so the task itself does not."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from reasonloop.reasoning import answering

answer_questions = task(answering.answer_questions, name="answer-questions", cache_policy=NO_CACHE)
complete_checkpoint = task(answering.complete_checkpoint, name="complete-checkpoint", cache_policy=NO_CACHE)
