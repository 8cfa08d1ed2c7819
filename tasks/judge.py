"""Judging answers: the configured judge scores every answered question of a batch."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from reasonloop.judges import Judge, JudgeItem
from reasonloop.schemas import AnswerRecord, Question, RetrievedChunk, Verdict


@task(name="judge-answers", cache_policy=NO_CACHE)
def judge_answers(questions: list[Question], contexts: list[list[RetrievedChunk]], answers: list[AnswerRecord],
                  judge: Judge) -> list[Verdict | None]:
    """A verdict per question; None where the question has no answer to judge (it failed)."""
    items = [JudgeItem(q, a, c) for q, c, a in zip(questions, contexts, answers, strict=True) if a.error is None]
    verdicts = iter(judge.judge(items))
    return [None if a.error is not None else next(verdicts) for a in answers]
