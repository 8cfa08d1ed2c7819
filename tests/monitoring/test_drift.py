"""Drift signals: false-alarm and detection rates over seeded synthetic trials, query drift on real questions
(SQuAD vs PubMedQA), and thin data giving "insufficient_data" instead of an exception or an alarm."""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from reasonloop.monitoring.drift_stats import (
    SignalResult,
    centroid_shift,
    chunk_novelty,
    detect_categorical_drift,
    detect_corpus_drift,
    detect_numeric_drift,
    detect_quality_drift,
    detect_query_drift,
    detect_retrieval_drift,
    new_vocabulary_share,
    population_stability_index,
)
from reasonloop.schemas import Question

from ..conftest import ROOT, SAMPLE_CORPUS, SAMPLE_QUESTIONS, read_jsonl

TRIALS = 100
DIM = 384
Trial = Callable[[np.random.Generator], SignalResult]

# A fixed "world" shared by the embedding trials: 9 topic clusters around a common direction (sentence embeddings
# are anisotropic), the 9th kept out of the reference windows; and a 2,500-word vocabulary, the last 500 words
# belonging to that new topic only.
_WORLD = np.random.default_rng(2024)
_COMMON = _WORLD.normal(size=DIM)
_CENTERS = 0.6 * _COMMON / np.linalg.norm(_COMMON) + 0.8 * _WORLD.normal(size=(9, DIM)) / np.sqrt(DIM)
_CENTERS /= np.linalg.norm(_CENTERS, axis=1, keepdims=True)
_VOCAB = np.array(sorted({"".join(_WORLD.choice(list(string.ascii_lowercase), 7)) for _ in range(2500)}))
_OLD_WORDS, _NEW_WORDS = _VOCAB[:2000], _VOCAB[2000:]
_ZIPF = 1 / np.arange(1, 2001) ** 1.1


def embeddings(rng: np.random.Generator, n: int, new_topic_share: float = 0.0) -> np.ndarray:
    """Unit rows around the first 8 topics; `new_topic_share` of them from the 9th."""
    topics = rng.integers(0, 8, n)
    topics[rng.random(n) < new_topic_share] = 8
    rows = _CENTERS[topics] + rng.normal(scale=1 / np.sqrt(DIM), size=(n, DIM))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def texts(rng: np.random.Generator, n: int, new_topic: bool = False) -> list[str]:
    """Chunks of 40 Zipf-distributed words; a new-topic chunk takes half its words from the new vocabulary."""
    words = rng.choice(_OLD_WORDS, (n, 40), p=_ZIPF / _ZIPF.sum())
    if new_topic:
        words[:, ::2] = rng.choice(_NEW_WORDS, (n, 20))
    return [" ".join(row) for row in words]


def rates(null: Trial, shifted: Trial) -> tuple[float, float]:
    """(false-alarm rate over TRIALS seeded unchanged windows, detection rate over TRIALS shifted ones)."""
    def share(trial: Trial, offset: int) -> float:
        results = [trial(np.random.default_rng(offset + seed)) for seed in range(TRIALS)]
        assert all(r.status != "insufficient_data" for r in results)
        return float(np.mean([r.drifted for r in results]))
    return share(null, 0), share(shifted, 10_000)


def assert_rates(null: Trial, shifted: Trial) -> None:
    false_alarms, detections = rates(null, shifted)
    print(f"false alarms {false_alarms:.2f}, detections {detections:.2f}")
    assert false_alarms <= 0.05 and detections >= 0.95, (false_alarms, detections)


# --- rates on synthetic data ---------------------------------------------------------------------------------------

def test_query_drift_new_topic() -> None:
    """Shift: 30% of the current window's 120 queries come from a topic the reference window never saw."""
    assert_rates(lambda r: detect_query_drift(embeddings(r, 120), embeddings(r, 120)),
                 lambda r: detect_query_drift(embeddings(r, 120), embeddings(r, 120, new_topic_share=0.3)))


def test_retrieval_drift_scores_drop() -> None:
    """Top-1 cosine ~ N(0.6, 0.1), 300 queries a window; shift: the mean drops by 0.5 sd (to 0.55)."""
    assert_rates(lambda r: detect_retrieval_drift(r.normal(0.6, 0.1, 300), r.normal(0.6, 0.1, 300)),
                 lambda r: detect_retrieval_drift(r.normal(0.6, 0.1, 300), r.normal(0.55, 0.1, 300)))


def test_output_length_drift() -> None:
    """Answer tokens, log-normal around a median of 60, 300 answers a window; shift: the median grows to 80."""
    def tokens(r: np.random.Generator, median: float) -> np.ndarray:
        return np.round(np.exp(r.normal(np.log(median), 0.5, 300)))

    assert_rates(lambda r: detect_numeric_drift(tokens(r, 60), tokens(r, 60), signal="output.tokens"),
                 lambda r: detect_numeric_drift(tokens(r, 60), tokens(r, 80), signal="output.tokens"))


STRATEGIES = ["chain_of_thought", "self_consistency", "verify", "tree_of_thought"]
MIX = [0.4, 0.3, 0.2, 0.1]


def test_strategy_mix_drift_with_a_new_category() -> None:
    """300 answers a window; shift: a strategy the reference never used ("react") takes 15% of the answers."""
    def mix(r: np.random.Generator, new_share: float = 0.0) -> list[str]:
        p = [share * (1 - new_share) for share in MIX] + [new_share]
        return list(r.choice(STRATEGIES + ["react"], 300, p=p))

    assert_rates(lambda r: detect_categorical_drift(mix(r), mix(r), signal="output.strategy"),
                 lambda r: detect_categorical_drift(mix(r), mix(r, 0.15), signal="output.strategy"))


def test_refusal_rate_drift() -> None:
    """Refused yes/no, 500 answers a window; shift: the refusal rate goes from 5% to 15%."""
    def refused(r: np.random.Generator, rate: float) -> list[bool]:
        return list(r.random(500) < rate)

    assert_rates(lambda r: detect_categorical_drift(refused(r, 0.05), refused(r, 0.05), signal="output.refusal"),
                 lambda r: detect_categorical_drift(refused(r, 0.05), refused(r, 0.15), signal="output.refusal"))


def nights(r: np.random.Generator, drop_sd: float = 0.0) -> np.ndarray:
    """60 nights of accuracy ~ N(0.70, 0.03): 30 reference nights, then 30 more, the last 25 lower by drop_sd."""
    series = r.normal(0.70, 0.03, 60)
    series[35:] -= drop_sd * 0.03
    return series


def test_quality_drift_accuracy_drop() -> None:
    """Shift: accuracy drops by 1.5 sd (4.5 points) from night 35 on; the change point is found near it."""
    assert_rates(lambda r: detect_quality_drift(nights(r), 30), lambda r: detect_quality_drift(nights(r, 1.5), 30))
    found = [detect_quality_drift(nights(np.random.default_rng(seed), 1.5), 30).extra for seed in range(TRIALS)]
    assert all(e["direction"] == -1 and 30 <= e["change_index"] <= e["alarm_index"] for e in found)
    assert abs(np.median([e["change_index"] for e in found]) - 35) <= 2


@pytest.mark.parametrize(("replaced", "new_words"), [(30, True), (15, False)])
def test_corpus_drift_new_topic(replaced: int, new_words: bool) -> None:
    """300 old chunks; a reindex replaces some of them. No shift: by chunks like the old ones. Shift: by chunks of a
    new topic (its own embedding cluster), 10% of the corpus with half their words from a vocabulary the old corpus
    never used, or 5% in the old vocabulary (the embedding distance alone must tell)."""
    def reindex(r: np.random.Generator, new_topic: bool) -> SignalResult:
        old_vectors, old_texts = embeddings(r, 300), texts(r, 300)
        kept = 300 - replaced
        new_vectors = np.vstack([old_vectors[:kept], embeddings(r, replaced, new_topic_share=float(new_topic))])
        new_texts = old_texts[:kept] + texts(r, replaced, new_topic and new_words)
        return detect_corpus_drift(old_vectors, new_vectors, old_texts, new_texts)

    assert_rates(lambda r: reindex(r, False), lambda r: reindex(r, True))


# --- the statistics themselves -------------------------------------------------------------------------------------

def test_effect_sizes_are_zero_without_change_and_grow_with_it() -> None:
    rng = np.random.default_rng(0)
    values, vectors = rng.normal(size=500), embeddings(rng, 200)
    assert population_stability_index(values, values) == pytest.approx(0.0)
    assert population_stability_index(values, values + 1.0) > 0.5 > population_stability_index(values, values + 0.3)
    assert centroid_shift(vectors, vectors) == pytest.approx(0.0, abs=1e-9)
    assert centroid_shift(vectors, -vectors) == pytest.approx(2.0)
    assert new_vocabulary_share(["the cat sat"], ["the dog sat 1999"]) == pytest.approx(1 / 3)  # numbers not words
    old_distance, new_distance, old_unseen, new_unseen = chunk_novelty(
        vectors[:3], ["a b", "b c", "c d"], vectors[3:4], ["a x"], n_old=3)
    assert old_unseen.tolist() == [0.5, 0.0, 0.5] and new_unseen.tolist() == [0.5]  # "a" and "d" occur once; "x" new
    assert old_distance.shape == (3,) and new_distance.shape == (1,) and (old_distance > 0).all()


def test_results_explain_themselves() -> None:
    rng = np.random.default_rng(3)
    query = detect_query_drift(embeddings(rng, 120), embeddings(rng, 120, 0.5))
    assert query.status == "drift" and query.p_value is not None and query.p_value < 0.01
    assert query.extra["centroid_shift"] > 0 and "MMD²" in query.detail
    large = detect_query_drift(embeddings(rng, 400), embeddings(rng, 350))
    assert (large.n_reference, large.n_current) == (400, 350) and "(300 vs 300 queries)" in large.detail

    retrieval = detect_retrieval_drift(np.r_[rng.normal(0.6, 0.1, 90), [np.nan] * 10],
                                       np.r_[rng.normal(0.6, 0.1, 60), [0.1] * 20, [np.nan] * 20])
    assert retrieval.n_reference == 90 and retrieval.n_current == 80  # NaN (empty retrieval) is not a score
    assert retrieval.extra["current_empty_share"] == pytest.approx(0.2)
    assert retrieval.extra["current_low_share"] >= 0.2 > retrieval.extra["reference_low_share"]

    strategy = detect_categorical_drift(["cot"] * 40 + ["rare"] * 2, ["cot"] * 30 + ["react"] * 30)
    assert strategy.status == "drift" and strategy.extra["reference_share.react"] == 0.0
    assert "react" in strategy.detail and "reference_share.rare" not in strategy.extra  # 2 of "rare": pooled out
    same = detect_categorical_drift([True] * 30, [True] * 25)
    assert same.status == "ok" and same.p_value == 1.0


# --- thin data: insufficient_data, never an exception or an alarm --------------------------------------------------

GOOD = np.random.default_rng(7).normal(0.6, 0.1, 50)
VECTORS = embeddings(np.random.default_rng(8), 50)
WORDS = texts(np.random.default_rng(9), 50)
CATEGORIES = ["a", "b"] * 25
NAN = [float("nan")] * 50

THIN: dict[str, tuple[Callable[[], SignalResult], str]] = {  # case: (call, what the detail must say)
    "query: empty window": (lambda: detect_query_drift(VECTORS, np.empty((0, DIM))), "current has 0 usable"),
    "query: empty list": (lambda: detect_query_drift([], VECTORS), "reference has 0 usable"),
    "query: too few": (lambda: detect_query_drift(VECTORS, VECTORS[:5]), "current has 5 usable values (need 20)"),
    "query: mismatched dims": (lambda: detect_query_drift(VECTORS, VECTORS[:, :128]),
                               "dimensions differ: reference 384, current 128"),
    "query: all NaN": (lambda: detect_query_drift(VECTORS, np.full((50, DIM), np.nan)), "current has 0 usable"),
    "retrieval: empty window": (lambda: detect_retrieval_drift([], GOOD), "reference has 0 usable"),
    "retrieval: too few": (lambda: detect_retrieval_drift(GOOD, GOOD[:3] + 1), "current has 3 usable"),
    "retrieval: all NaN": (lambda: detect_retrieval_drift(GOOD, NAN), "current has 0 usable"),
    "numeric: all NaN": (lambda: detect_numeric_drift(NAN, GOOD), "reference has 0 usable"),
    "categorical: empty window": (lambda: detect_categorical_drift(CATEGORIES, []), "current has 0 usable"),
    "categorical: too few": (lambda: detect_categorical_drift(CATEGORIES, ["c"] * 5), "current has 5 usable"),
    "categorical: all None": (lambda: detect_categorical_drift([None] * 50, CATEGORIES), "reference has 0 usable"),
    "categorical: all NaN": (lambda: detect_categorical_drift(CATEGORIES, NAN), "current has 0 usable"),
    "categorical: all rare": (lambda: detect_categorical_drift(list("abcdefghij") * 3, list("klmnopqrst") * 3),
                              "every category occurs fewer than 5 times"),
    "quality: empty series": (lambda: detect_quality_drift([], 0), "reference has 0 usable"),
    "quality: short reference": (lambda: detect_quality_drift([0.7, 0.71, 0.2, 0.1], 2),
                                 "reference has 2 usable values (need 10)"),
    "quality: no current nights": (lambda: detect_quality_drift(GOOD[:30], 30), "current has 0 usable"),
    "quality: all NaN": (lambda: detect_quality_drift(NAN, 30), "reference has 0 usable"),
    "corpus: empty window": (lambda: detect_corpus_drift(VECTORS, np.empty((0, DIM)), WORDS, []),
                             "current has 0 usable"),
    "corpus: mismatched dims": (lambda: detect_corpus_drift(VECTORS, VECTORS[:, :128], WORDS, WORDS),
                                "dimensions differ"),
    "corpus: all NaN": (lambda: detect_corpus_drift(VECTORS, np.full((50, DIM), np.nan), WORDS, WORDS),
                        "current has 0 usable"),
    "corpus: few changed chunks": (lambda: detect_corpus_drift(VECTORS, VECTORS, WORDS, [*WORDS[:47], "a", "b", "c"]),
                                   "changed_chunks has 3 usable values (need 5)"),
}


@pytest.mark.parametrize("case", THIN)
def test_thin_data_is_insufficient_not_an_alarm(case: str) -> None:
    call, says = THIN[case]
    result = call()
    assert result.status == "insufficient_data" and not result.drifted
    assert result.statistic is None and result.p_value is None
    assert says in result.detail, result.detail


@pytest.mark.parametrize(("call", "argument"), [
    (lambda: detect_query_drift(VECTORS, GOOD), "current"),
    (lambda: detect_corpus_drift(GOOD, VECTORS, WORDS, WORDS), "old_embeddings"),
    (lambda: detect_numeric_drift(VECTORS, GOOD), "reference"),
    (lambda: detect_quality_drift(VECTORS, 10), "series"),
])
def test_wrong_shapes_name_the_argument(call: Callable[[], Any], argument: str) -> None:
    with pytest.raises(ValueError, match=rf"^{argument} must be a"):
        call()


# --- real questions: SQuAD vs PubMedQA -----------------------------------------------------------------------------

PUBMEDQA_QUESTIONS = ROOT / "data" / "drift" / "pubmedqa_questions.jsonl"


def test_pubmedqa_questions_are_project_questions() -> None:
    questions = [Question.model_validate(row) for row in read_jsonl(PUBMEDQA_QUESTIONS)]
    assert len(questions) == len({q.id for q in questions}) == 150
    assert {q.reference for q in questions} == {"yes", "no", "maybe"}
    assert all(q.metadata["source"] == "pubmedqa" and q.metadata["long_answer"] for q in questions)


@pytest.fixture(scope="module")
def question_vectors(embedder: Any) -> tuple[np.ndarray, np.ndarray]:
    """all-MiniLM-L6-v2 vectors of the 72 SQuAD sample questions and the 150 PubMedQA ones."""
    squad, pubmed = (embedder.embed([q["question"] for q in read_jsonl(path)])
                     for path in (SAMPLE_QUESTIONS, PUBMEDQA_QUESTIONS))
    return squad, pubmed


def test_query_drift_fires_on_biomedical_questions(question_vectors: tuple[np.ndarray, np.ndarray]) -> None:
    squad, pubmed = question_vectors
    result = detect_query_drift(squad, pubmed)
    assert result.status == "drift" and result.p_value is not None and result.p_value < 0.01
    assert result.extra["centroid_shift"] > 0.5  # ~0.85: the two question sets point different ways
    assert (result.n_reference, result.n_current) == (72, 150)


def test_query_drift_is_quiet_on_halves_of_the_same_questions(question_vectors: tuple[np.ndarray, np.ndarray]) -> None:
    """20 seeded random splits of the SQuAD questions into two disjoint halves of 36: at most one alarm."""
    squad, _ = question_vectors
    splits = [np.random.default_rng(seed).permutation(len(squad)) for seed in range(20)]
    results = [detect_query_drift(squad[order[:36]], squad[order[36:]], seed=seed)
               for seed, order in enumerate(splits)]
    assert all(r.status != "insufficient_data" for r in results)
    assert sum(r.drifted for r in results) <= 1


@pytest.fixture(scope="module")
def similarities(embedder: Any, question_vectors: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Cosines of each SQuAD and PubMedQA question to the 48 SQuAD sample paragraphs (the demo corpus)."""
    corpus = embedder.embed([r["text"] for r in read_jsonl(SAMPLE_CORPUS)])
    squad, pubmed = question_vectors
    return squad @ corpus.T, pubmed @ corpus.T


@pytest.fixture(scope="module")
def top_scores(similarities: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    squad, pubmed = similarities
    return squad.max(axis=1), pubmed.max(axis=1)


def halves(values: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(values))
    return values[order[: len(values) // 2]], values[order[len(values) // 2:]]


def test_retrieval_drift_on_real_questions(top_scores: tuple[np.ndarray, np.ndarray]) -> None:
    """Biomedical questions find nothing close in a Wikipedia corpus: their top-1 cosine drops and drift fires;
    random halves of the in-domain questions never fire."""
    squad, pubmed = top_scores
    shifted = detect_retrieval_drift(squad, pubmed)
    assert shifted.status == "drift" and float(np.median(pubmed)) < float(np.median(squad)) - 0.2
    quiet = [detect_retrieval_drift(*halves(squad, seed)) for seed in range(20)]
    assert all(r.status != "insufficient_data" for r in quiet) and sum(r.drifted for r in quiet) <= 1


def test_output_length_drift_on_real_answers() -> None:
    """SQuAD's short span answers vs PubMedQA's long answers (as a model moving to long-form answers would look)."""
    squad = np.array([len(q["reference"].split()) for q in read_jsonl(SAMPLE_QUESTIONS)], dtype=float)
    pubmed = np.array([len(q["metadata"]["long_answer"].split()) for q in read_jsonl(PUBMEDQA_QUESTIONS)], dtype=float)
    assert detect_numeric_drift(squad, pubmed, signal="output.answer_length").status == "drift"
    quiet = [detect_numeric_drift(*halves(squad, seed)) for seed in range(20)]
    assert all(r.status != "insufficient_data" for r in quiet) and sum(r.drifted for r in quiet) <= 1


def test_strategy_mix_drift_on_real_questions(similarities: tuple[np.ndarray, np.ndarray]) -> None:
    """Adaptive depth routes each question by its complexity (reasoning/routing.py): biomedical questions, longer
    and poorly matched by the corpus, shift the strategy mix; halves of the SQuAD questions do not."""
    from reasonloop.reasoning.config import ReasoningConfig
    from reasonloop.reasoning.routing import complexity, route_of
    from reasonloop.schemas import RetrievedChunk

    cfg = ReasoningConfig()

    def strategies(path: Any, cosines: np.ndarray) -> np.ndarray:
        picked = []
        for q, row in zip(read_jsonl(path), cosines, strict=True):
            top = [RetrievedChunk(chunk_id=str(k), doc_id=str(k), text="", score=float(row[k]), rank=rank,
                                  dense_score=float(row[k])) for rank, k in enumerate(np.argsort(-row)[:2], start=1)]
            question = Question(id=q["id"], question=q["question"], reference=q["reference"])
            picked.append(cfg.routes[route_of(complexity(question, top), cfg)])
        return np.array(picked)

    squad, pubmed = (strategies(path, cosines) for path, cosines in
                     zip((SAMPLE_QUESTIONS, PUBMEDQA_QUESTIONS), similarities, strict=True))
    assert detect_categorical_drift(list(squad), list(pubmed), signal="output.strategy").status == "drift"
    quiet = [detect_categorical_drift(*(list(h) for h in halves(squad, seed))) for seed in range(20)]
    assert all(r.status != "insufficient_data" for r in quiet) and sum(r.drifted for r in quiet) <= 1


@pytest.mark.parametrize("shift", [True, False])
def test_quality_drift_on_real_verdicts(shift: bool) -> None:
    """Nightly accuracy over 100 human-labeled model answers a night (TruthfulQA): 20 nights of Paranormal questions,
    then 15 of Conspiracies ones (39.6% -> 48.8% true, about 1.9 nightly sds) fire; 35 nights of one category do not
    (20 seeded series each)."""
    rows = read_jsonl(ROOT / "data" / "drift" / "truthfulqa_labels.jsonl")
    labels = {c: np.array([r["label"] for r in rows if r["category"] == c]) for c in ("Paranormal", "Conspiracies")}
    fired = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        later = labels["Conspiracies" if shift else "Paranormal"]
        series = [rng.choice(labels["Paranormal"], 100).mean() for _ in range(20)] + \
                 [rng.choice(later, 100).mean() for _ in range(15)]
        fired += detect_quality_drift(np.array(series), n_reference=20).drifted
    assert fired >= 19 if shift else fired <= 1


def test_corpus_drift_on_real_paragraphs(embedder: Any) -> None:
    """A reindex of 40 SQuAD paragraphs replacing 6: by 6 others drawn from the same 48 (exchangeable: 20 seeded
    draws, at most one alarm), or by 6 PubMedQA answers (fires every time)."""
    paragraphs = [r["text"] for r in read_jsonl(SAMPLE_CORPUS)]
    biomedical = [q["metadata"]["long_answer"] for q in read_jsonl(PUBMEDQA_QUESTIONS)][:6]
    vectors, other = embedder.embed(paragraphs), embedder.embed(biomedical)
    quiet, fired = 0, 0
    for seed in range(20):
        order = np.random.default_rng(seed).permutation(len(paragraphs))
        old, spare = order[:40], order[40:46]
        kept = old[6:]
        same = detect_corpus_drift(vectors[old], vectors[np.concatenate([kept, spare])],
                                   [paragraphs[i] for i in old], [paragraphs[i] for i in (*kept, *spare)])
        shifted = detect_corpus_drift(vectors[old], np.vstack([vectors[kept], other]), [paragraphs[i] for i in old],
                                      [paragraphs[i] for i in kept] + biomedical)
        assert same.status != "insufficient_data"
        quiet += not same.drifted
        fired += shifted.drifted
    assert quiet >= 19 and fired == 20, (quiet, fired)


def test_refusal_drift_on_real_injection_attempts() -> None:
    """The input guardrail refuses questions that try to override the system: when users start sending BIPIA's
    direct attacks (12 of 72 questions), the refusal rate drifts; the plain SQuAD questions refuse none."""
    import json

    from reasonloop.evaluation.safety import build_cases
    from reasonloop.reasoning.guardrails import screen_question

    data = json.loads((ROOT / "data" / "safety" / "bipia_sample.json").read_text(encoding="utf-8"))
    attacks = [c.question for c in build_cases(data) if c.kind == "direct"]
    squad = [q["question"] for q in read_jsonl(SAMPLE_QUESTIONS)]
    reference = [bool(screen_question(q)) for q in squad]
    current = [bool(screen_question(q)) for q in squad[: len(squad) - len(attacks)] + attacks]
    assert not any(reference) and sum(current) == len(attacks) == 12
    assert detect_categorical_drift(reference, current, signal="output.refusal").status == "drift"
    assert not detect_categorical_drift(reference[:36], reference[36:], signal="output.refusal").drifted
