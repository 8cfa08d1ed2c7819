"""Pure answer and retrieval metrics (SQuAD-style normalization); empty inputs have defined results. And the
commonest failure causes of a run, counted."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from reasonloop.text import normalize_answer


def exact_match(prediction: str, reference: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(reference)


def token_f1(prediction: str, reference: str) -> float:
    """Token-overlap F1; 1.0 when both normalize to nothing, 0.0 when only one does."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def reference_recall(prediction: str, reference: str) -> float:
    """Share of the reference's tokens present in the prediction (DPR's "has answer", graded)."""
    pred, ref = Counter(normalize_answer(prediction).split()), Counter(normalize_answer(reference).split())
    if not ref:
        return 0.0
    return sum((pred & ref).values()) / sum(ref.values())


def recall_at_k(retrieved_ids: Sequence[str], gold_ids: Sequence[str]) -> float | None:
    """Share of gold ids found among the retrieved ids; None when there are no gold ids."""
    if not gold_ids:
        return None
    found = set(retrieved_ids)
    return sum(1 for g in set(gold_ids) if g in found) / len(set(gold_ids))


def context_precision(ranked_ids: Sequence[str], gold_ids: Sequence[str]) -> float | None:
    """Average precision of a ranked context against the gold documents (RAGAS' context precision): the mean of
    precision@k over the ranks k holding a gold document; 0 when none does, None without gold ids or context."""
    if not gold_ids or not ranked_ids:
        return None
    wanted, hits, total = set(gold_ids), 0, 0.0
    for k, doc in enumerate(ranked_ids, start=1):
        if doc in wanted:
            hits += 1
            total += hits / k
    return total / hits if hits else 0.0


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (linear interpolation); None for no values."""
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else None


def mean(values: Sequence[float]) -> float | None:
    return float(np.mean(np.asarray(values, dtype=float))) if len(values) else None


def unique_in_order(ids: Sequence[str]) -> list[str]:
    """Document ids of a chunk ranking, first occurrence kept (several chunks may share a document)."""
    return list(dict.fromkeys(ids))


def mrr_at_k(ranked: Sequence[str], gold: Sequence[str], k: int = 10) -> float | None:
    """Reciprocal rank of the first gold id within the top k; 0 when none is there; None without gold ids."""
    if not gold:
        return None
    wanted = set(gold)
    return next((1.0 / rank for rank, doc in enumerate(ranked[:k], start=1) if doc in wanted), 0.0)


def ndcg_at_k(ranked: Sequence[str], gold: Sequence[str], k: int = 10) -> float | None:
    """Binary-relevance nDCG@k; None without gold ids."""
    if not gold:
        return None
    wanted = set(gold)
    dcg = sum(1.0 / np.log2(rank + 1) for rank, doc in enumerate(ranked[:k], start=1) if doc in wanted)
    ideal = sum(1.0 / np.log2(rank + 1) for rank in range(1, min(len(wanted), k) + 1))
    return float(dcg / ideal)


ATTEMPTS = re.compile(r" \(after \d+ attempts\)$")


def failure_causes(errors: list[str], top: int = 3) -> list[str]:
    """The commonest reasons among failed questions as '<count> x <cause>' (a cause's retry count left out, so one
    cause is one line however often each question was tried)."""
    counts = Counter(ATTEMPTS.sub("", error.strip().splitlines()[0] if error.strip() else "no answer")[:200]
                     for error in errors)
    return [f"{n} x {cause}" for cause, n in counts.most_common(top)]
