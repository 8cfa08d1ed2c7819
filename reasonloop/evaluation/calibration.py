"""Judge calibration: how far a judge's groundedness verdicts agree with human consistency labels (SummEdits)."""

from __future__ import annotations

from collections import defaultdict

from pydantic import Field

from reasonloop.evaluation.judges import Judge, JudgeItem
from reasonloop.schemas import AnswerRecord, LabeledPair, Question, Record, RetrievedChunk, Verdict

CALIBRATION_QUESTION = "Is every claim of this summary supported by the document?"


class Agreement(Record):
    """A judge against human labels on one slice (a domain, or all); None where a measure is undefined."""

    slice: str
    n: int
    n_judge_errors: int
    balanced_accuracy: float | None = None
    cohen_kappa: float | None = None
    auroc: float | None = Field(default=None, description="of the grounded fraction as a consistency score")
    predicted_consistent: float | None = None


def judge_item(pair: LabeledPair) -> JudgeItem:
    """A labeled pair as the judge sees an answer: the summary is the answer, the document its only evidence."""
    question = Question(id=pair.id, question=CALIBRATION_QUESTION, reference="(no reference: judged on grounding)")
    return JudgeItem(question, AnswerRecord(question_id=pair.id, answer=pair.summary),
                     [RetrievedChunk(chunk_id=f"{pair.id}#doc", doc_id=pair.id, text=pair.doc, score=1.0, rank=1)])


def agreement(name: str, labels: list[int], verdicts: list[Verdict]) -> Agreement:
    """Consistent = no unsupported claim; judge errors are counted and left out, never scored."""
    from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score, roc_auc_score

    scored = [(y, v) for y, v in zip(labels, verdicts, strict=True) if v.judge_error is None]
    errors = len(labels) - len(scored)
    if not scored:
        return Agreement(slice=name, n=len(labels), n_judge_errors=errors)
    truth = [y for y, _ in scored]
    predicted = [int(not v.hallucinated) for _, v in scored]
    both = len(set(truth)) == 2
    return Agreement(slice=name, n=len(labels), n_judge_errors=errors,
                     balanced_accuracy=float(balanced_accuracy_score(truth, predicted)) if both else None,
                     cohen_kappa=float(cohen_kappa_score(truth, predicted)) if both else None,
                     auroc=float(roc_auc_score(truth, [v.grounded_fraction for _, v in scored])) if both else None,
                     predicted_consistent=sum(predicted) / len(predicted))


def calibrate_judge(judge: Judge, pairs: list[LabeledPair]) -> tuple[list[Agreement], list[Verdict]]:
    """The judge's verdict on every pair, and its agreement with the labels per domain and over all pairs."""
    verdicts = judge.judge([judge_item(p) for p in pairs])
    by_domain: dict[str, list[int]] = defaultdict(list)
    for i, pair in enumerate(pairs):
        by_domain[pair.domain or "all"].append(i)
    slices = [agreement(domain, [pairs[i].label for i in idx], [verdicts[i] for i in idx])
              for domain, idx in sorted(by_domain.items())]
    if len(by_domain) > 1:
        slices.append(agreement("all", [p.label for p in pairs], verdicts))
    return slices, verdicts


def floor_failures(slices: list[Agreement], floor: dict[str, float]) -> list[str]:
    """Why the judge misses its floor over all pairs (the single slice when there is one domain); a measure the data
    cannot define (one class only) misses it too. Empty: the judge reaches every floor."""
    overall = next((a for a in slices if a.slice == "all"), slices[-1])
    failures = []
    for measure, minimum in sorted(floor.items()):
        value = getattr(overall, measure)
        if value is None or value < minimum:
            shown = "undefined" if value is None else f"{value:.3f}"
            failures.append(f"{measure} {shown} < {minimum} ({overall.slice}, {overall.n} pairs)")
    return failures
