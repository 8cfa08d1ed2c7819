"""Judging answers: the configured judge scores every answered question of a batch, reusing stored verdicts."""

from __future__ import annotations

import logging

from reasonloop.evaluation.judges import Judge, JudgeItem
from reasonloop.reasoning.answer_store import RecordStore, verdict_key
from reasonloop.schemas import AnswerRecord, Question, RetrievedChunk, Verdict

logger = logging.getLogger(__name__)


def judge_answers(questions: list[Question], contexts: list[list[RetrievedChunk]], answers: list[AnswerRecord],
                  judge: Judge, store: RecordStore | None = None) -> list[Verdict | None]:
    """A verdict per question; None where the question has no answer to judge (it failed). With a store, a verdict
    by the same judge version on the same question, answer and evidence is reused; new ones are saved."""
    items = {i: JudgeItem(q, a, a.evidence(c)) for i, (q, c, a) in enumerate(zip(questions, contexts, answers,
                                                                                 strict=True)) if a.error is None}
    keys = {i: verdict_key(judge.identity, it.question, it.answer, it.context) for i, it in items.items()}
    stored = store.get_many(list(keys.values())) if store is not None else {}
    todo = [i for i in items if keys[i] not in stored]
    fresh = dict(zip(todo, judge.judge([items[i] for i in todo]), strict=True))
    if store is not None:
        try:
            for i, verdict in fresh.items():
                if verdict.judge_error is None:  # a failed judgement is asked again next time
                    store.put(keys[i], verdict)
        except Exception as exc:  # noqa: BLE001 - a full disk must not lose the batch's verdicts
            logger.warning("could not save verdicts: %s", exc)
    reused = {i: stored[keys[i]].model_copy(update={"reused": True}) for i in items if i not in fresh}
    return [fresh.get(i) or reused.get(i) for i in range(len(answers))]
