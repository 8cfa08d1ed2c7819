from __future__ import annotations

import pytest

from reasonloop.evaluation.metrics import (
    context_precision,
    exact_match,
    percentile,
    recall_at_k,
    reference_recall,
    token_f1,
)
from reasonloop.text import normalize_answer, split_sentences


def test_normalization_follows_squad() -> None:
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert exact_match("the Denver Broncos.", "Denver Broncos")


def test_token_f1_hand_computed() -> None:
    # prediction tokens: denver broncos won (3); reference: denver broncos (2); overlap 2
    # precision 2/3, recall 1 -> F1 = 2 * (2/3) / (5/3) = 0.8
    assert token_f1("Denver Broncos won", "Denver Broncos") == pytest.approx(0.8)
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0 and token_f1("cat", "dog") == 0.0


def test_reference_recall() -> None:
    assert reference_recall("In 2016 the Denver Broncos won.", "Denver Broncos") == 1.0
    assert reference_recall("Denver won", "Denver Broncos") == 0.5
    assert reference_recall("anything", "") == 0.0


def test_recall_at_k_and_percentiles() -> None:
    assert recall_at_k(["a", "b"], ["b"]) == 1.0
    assert recall_at_k(["a", "b"], ["c", "b"]) == 0.5
    assert recall_at_k(["a"], []) is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([], 95) is None


def test_sentence_split() -> None:
    assert split_sentences("It rained. Then it stopped! Was it 3.5 mm? Yes.") == [
        "It rained.", "Then it stopped!", "Was it 3.5 mm?", "Yes."]


def test_context_precision_is_average_precision_over_the_ranks() -> None:
    assert context_precision(["g", "x", "g2", "x"], ["g", "g2"]) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert context_precision(["x", "g"], ["g"]) == 0.5
    assert context_precision(["x", "y"], ["g"]) == 0.0
    assert context_precision(["x"], []) is None and context_precision([], ["g"]) is None
