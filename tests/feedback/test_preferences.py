from __future__ import annotations

import hashlib
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reasonloop.feedback.config import PreferencesConfig
from reasonloop.feedback.exports import export_dataset
from reasonloop.feedback.preferences import (
    FILTER_STEPS,
    PreferenceDataset,
    PreferencePair,
    build_dataset,
    clean_pairs,
    normalize_text,
    pairs_from_corrections,
    pairs_from_scores,
    pairs_from_thumbs,
    redact_pii,
    split_pairs,
    unpaired_rows,
)
from reasonloop.feedback.records import FeedbackRecord, load_feedback

from ..conftest import ROOT, SAMPLE_QUESTIONS, read_jsonl

T0 = datetime(2025, 11, 20, 9, tzinfo=UTC)


def fb(question: str, answer: str, rating: str | int, minutes: int = 0, **extra: Any) -> FeedbackRecord:
    return FeedbackRecord(question_id=extra.pop("question_id", "q-" + normalize_text(question)[:12]),
                          question=question, answer=answer, rating=rating, timestamp=T0 + timedelta(minutes=minutes),
                          **extra)


def pair(prompt: str, source: str = "correction", chosen: str = "good", rejected: str = "bad",
         **extra: Any) -> PreferencePair:
    return PreferencePair(prompt=prompt, chosen=chosen, rejected=rejected, source=source,  # type: ignore[arg-type]
                          question_id=extra.pop("question_id", prompt[:10]), **extra)


def tree_hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# ---------------------------------------------------------------- builders

def test_corrections_choose_the_correction_over_the_original() -> None:
    records = [fb("What is oxygen's symbol?", "Ox", "down", corrected_answer="O", source_run_id="r1", segment="sci"),
               fb("Where does the Rhine end?", "North Sea", "up")]  # no correction: no pair
    assert pairs_from_corrections(records) == [
        PreferencePair(prompt="What is oxygen's symbol?", chosen="O", rejected="Ox", source="correction",
                       question_id="q-what is oxyg", source_run_ids=["r1"], margin=None,
                       meta={"rating": "down", "segment": "sci"})]


def test_thumbs_pair_liked_with_disliked_answers_deterministically() -> None:
    records = [
        fb("Where does the Rhine end?", "In the North Sea.", "up", 0, source_run_id="r1"),
        fb("where does the Rhine end", "in the north sea", 4, 5, source_run_id="r2"),  # same answer, pooled: +0.75
        fb("Where does the Rhine end?", "In the Baltic.", "down", 1, source_run_id="r3"),
        fb("Where does the Rhine end?", "In the Black Sea.", 2, 2),                   # -0.5
        fb("Where does the Rhine end?", "In a lake.", 3, 3),                          # neutral: never paired
        fb("Where does the Rhine end?", "Near Basel.", "up", 4),                      # +1, best liked
        fb("Who found oxygen?", "Priestley", "up", 0),                                # liked only: no pair
        fb("Who named the Black Death?", "Pontanus", "up", 0),
        fb("Who named the Black Death?", "Pontanus", "down", 1),                      # split votes: mean 0
        fb("Who named the Black Death?", "Euclid", "down", 2),
    ]
    pairs = pairs_from_thumbs(records)
    assert [(p.prompt, p.chosen, p.rejected, p.margin) for p in pairs] == [
        ("Where does the Rhine end?", "Near Basel.", "In the Baltic.", 2.0),
        ("Where does the Rhine end?", "In the North Sea.", "In the Black Sea.", 1.25),
    ]
    assert pairs[0].source_run_ids == ["r3"] and pairs[1].source_run_ids == ["r1", "r2"]
    assert pairs[1].meta == {"votes_chosen": 2, "votes_rejected": 1}
    for seed in range(5):  # the record order does not matter
        shuffled = records[:]
        random.Random(seed).shuffle(shuffled)
        assert pairs_from_thumbs(shuffled) == pairs


def test_scores_pick_best_and_worst_above_the_margin() -> None:
    scored = {"Q2": [("b", 0.9), ("a", 0.9), ("c", 0.1), ("d", 0.1)],  # ties broken by the text
              "Q1": [("x", 0.6), ("y", 0.5)],                          # margin 0.1 < 0.3
              "Q3": [("Same.", 0.9), ("same", 0.1)],                   # the same answer after normalisation
              "Q4": [("only", 1.0)]}
    pairs = pairs_from_scores(scored, min_margin=0.3, question_ids={"Q2": "id2"}, source_run_ids=["judge", "gen"])
    assert [(p.prompt, p.chosen, p.rejected, p.margin, p.question_id) for p in pairs] == [("Q2", "a", "c", 0.8, "id2")]
    assert pairs[0].source == "rlaif" and pairs[0].source_run_ids == ["gen", "judge"]
    assert pairs[0].meta == {"n_samples": 4}
    assert len(pairs_from_scores(scored, min_margin=0.1)) == 2


def test_unpaired_rows_for_kto() -> None:
    rows = unpaired_rows([fb("Q?", "yes", "up"), fb("Q?", "no", 1, corrected_answer="yes"), fb("Q?", "eh", 3)])
    assert rows == [{"prompt": "Q?", "completion": "no", "label": False},
                    {"prompt": "Q?", "completion": "yes", "label": True}]


# ---------------------------------------------------------------- hygiene

def test_pii_is_redacted_but_numbers_are_not() -> None:
    assert redact_pii("mail jane.roe@example.org or +44 20 7946 0958 / (555) 123-4567, key sk-abcdefghijklmnop12") \
        == "mail [email] or [phone] / [phone], key ***"
    plain = "Born in 1856; the 2015-2016 season; 1,234,567 people; won 24-10 on 2016-02-07."
    assert redact_pii(plain) == plain


def test_hygiene_removes_planted_cases_and_counts_each_step(embedder: Any) -> None:
    evals = {"squad": ["Which network broadcasted Super Bowl 50 in the U.S.?", "Who was the Super Bowl 50 MVP?"]}
    pairs = [
        pair("What is the chemical symbol of oxygen?", chosen="O", rejected="Ox"),
        pair("What's the chemical symbol for oxygen?", "thumbs", chosen="O.", rejected="Oxy"),  # near dup (0.99)
        pair("What is the atomic number of oxygen?", "rlaif", chosen="8", rejected="16", margin=0.5),  # kept (0.65)
        pair("who was the super bowl 50 MVP", chosen="Von Miller", rejected="Cam Newton"),  # eval leak, exact
        pair("What network aired Super Bowl 50 in the United States?", "rlaif", chosen="CBS", rejected="NBC",
             margin=0.9),                                                                   # eval leak, near (0.93)
        pair("Into which sea does the Rhine flow?", chosen="North Sea", rejected="north sea."),  # identical
        pair("Into which sea does the Rhine flow?", "thumbs", chosen="The North Sea", rejected="The Baltic"),
        pair("  into which sea does the Rhine flow ", "rlaif", chosen="North Sea", rejected="Lake Constance",
             margin=0.4),                                                                   # exact dup prompt
        pair("What is a prime number?", chosen="x" * 50, rejected="y"),                     # too long
        pair("Email me: who proved air is needed for fire? a@b.io", "thumbs", chosen="Boyle", rejected="Mayow"),
        pair("What is a composite number?", "rlaif", chosen="Not prime", rejected="Prime", margin=0.6),
    ]
    cfg = PreferencesConfig(max_response_chars=40, max_per_source={"rlaif": 1})
    kept, report = clean_pairs(pairs, embedder, evals, cfg)
    assert list(report.removed) == list(FILTER_STEPS)
    assert report.removed == {"too_long": 1, "chosen_equals_rejected": 1, "exact_duplicate_prompt": 1,
                              "eval_leak_exact": 1, "eval_leak_near": 1, "near_duplicate_prompt": 1, "balance_cap": 1}
    assert report.n_in == 11 and report.n_out == 4 and report.redacted == 1
    assert [(leak.prompt, leak.eval_question, leak.kind) for leak in report.leaked] == [
        ("who was the super bowl 50 MVP", "Who was the Super Bowl 50 MVP?", "exact"),
        ("What network aired Super Bowl 50 in the United States?",
         "Which network broadcasted Super Bowl 50 in the U.S.?", "near")]
    assert report.leaked[1].cosine >= cfg.leak_threshold
    prompts = {p.prompt: p for p in kept}
    assert len(prompts) == 4 and not {leak.prompt for leak in report.leaked} & set(prompts)
    assert "What is the atomic number of oxygen?" in prompts or "What is a composite number?" in prompts
    assert prompts["What is the chemical symbol of oxygen?"].source == "correction"  # first in priority order
    assert prompts["Into which sea does the Rhine flow?"].source == "thumbs"  # the identical correction went first
    assert "Email me: who proved air is needed for fire? [email]" in prompts
    assert report.per_source_in == {"correction": 4, "thumbs": 3, "rlaif": 4}
    assert report.per_source_out == {"correction": 1, "thumbs": 2, "rlaif": 1}  # atomic number or composite
    again, _ = clean_pairs(list(reversed(pairs)), embedder, evals, cfg)  # the input order does not matter
    assert again == kept


def test_split_is_a_function_of_the_prompt_alone() -> None:
    pairs = [pair(f"Question number {i}?") for i in range(400)]
    train, test = split_pairs(pairs, test_fraction=0.2, seed=7)
    assert len(train) + len(test) == 400 and 50 <= len(test) <= 110
    more = pairs + [pair(f"Another question {i}?") for i in range(200)]
    _, test_more = split_pairs(more, test_fraction=0.2, seed=7)
    assert {p.prompt for p in test} == {p.prompt for p in test_more if p.prompt.startswith("Question")}
    _, other_seed = split_pairs(pairs, test_fraction=0.2, seed=8)
    assert {p.prompt for p in other_seed} != {p.prompt for p in test}


# ---------------------------------------------------------------- build from the sample, export

@pytest.fixture(scope="module")
def sample_dataset(embedder: Any) -> PreferenceDataset:
    records = load_feedback(ROOT / "data" / "feedback").records
    pairs = pairs_from_corrections(records) + pairs_from_thumbs(records) + pairs_from_scores(
        {"What is a prime number?": [("A number with exactly two divisors.", 0.9), ("Any odd number.", 0.2)],
         "Name a prime between 10 and 15.": [("11 or 13", 0.95), ("12", 0.05)]}, min_margin=0.5,
        source_run_ids=["judge-run"])
    evals = {"squad_sample": [q["question"] for q in read_jsonl(SAMPLE_QUESTIONS)]}
    return build_dataset(pairs, embedder, evals, PreferencesConfig(test_fraction=0.3, seed=1))


def test_the_sample_feedback_builds_and_the_eval_question_leaks(sample_dataset: PreferenceDataset) -> None:
    report = sample_dataset.report
    assert report.per_source_in == {"correction": 3, "thumbs": 3, "rlaif": 2}
    assert [(leak.prompt, leak.eval_question, leak.kind) for leak in report.leaked] == [
        ("Who was the Super Bowl 50 MVP?", "Who was the Super Bowl 50 MVP?", "exact"),
        ("Where did the Black Death probably come from?", "Where did the black death originate?", "near")]
    assert report.removed["eval_leak_exact"] == report.removed["eval_leak_near"] == 1
    assert report.removed["exact_duplicate_prompt"] == 1  # the prime-number prompt: the correction wins
    assert report.n_out == 5 == len(sample_dataset.train) + len(sample_dataset.test)
    assert {p.prompt for p in sample_dataset.train + sample_dataset.test} == {
        "What is the chemical symbol of oxygen?", "What is a prime number?", "Into which sea does the Rhine flow?",
        "In which years did the Apollo program land humans on the Moon?", "Name a prime between 10 and 15."}


def test_export_is_atomic_and_byte_identical(sample_dataset: PreferenceDataset, tmp_path: Path) -> None:
    first = export_dataset(sample_dataset, tmp_path / "a", conversational=False)
    second = export_dataset(sample_dataset, tmp_path / "b" / "nested", conversational=False)
    assert first == second and tree_hashes(tmp_path / "a") == tree_hashes(tmp_path / "b" / "nested")
    names = {"train.jsonl", "test.jsonl", "train.parquet", "test.parquet", "lineage.jsonl", "dataset_card.md",
             "manifest.json"}
    assert set(tree_hashes(tmp_path / "a")) == names and set(first["files"]) == names - {"manifest.json"}
    for name, digest in first["files"].items():
        assert hashlib.sha256((tmp_path / "a" / name).read_bytes()).hexdigest() == digest
    assert json.loads((tmp_path / "a" / "manifest.json").read_text()) == first
    assert first["rows"] == {"train": len(sample_dataset.train), "test": len(sample_dataset.test)}

    rows = [json.loads(line) for line in (tmp_path / "a" / "train.jsonl").read_text().splitlines()]
    assert rows and all(list(r) == ["chosen", "prompt", "rejected"] and all(isinstance(v, str) for v in r.values())
                        for r in rows)
    card = (tmp_path / "a" / "dataset_card.md").read_text()
    assert "| eval_leak_exact | 1 |" in card and "`judge-run`" in card and '"leak_threshold": 0.85' in card
    assert "Who was the Super Bowl 50 MVP?" in card and "| **all** | 8 | 5 |" in card

    conv = export_dataset(sample_dataset, tmp_path / "a", conversational=True)  # replaces the folder in place
    assert conv["format"] == "conversational" and conv["files"]["train.jsonl"] != first["files"]["train.jsonl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no temporary or old folder left behind
    row = json.loads((tmp_path / "a" / "train.jsonl").read_text().splitlines()[0])
    assert row["prompt"][0]["role"] == "user" and row["chosen"][0]["role"] == "assistant"
    assert row["rejected"][0]["role"] == "assistant" and len(row["chosen"]) == len(row["rejected"]) == 1


def test_parquet_holds_the_same_rows(sample_dataset: PreferenceDataset, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    for conversational in (False, True):
        out = tmp_path / str(conversational)
        export_dataset(sample_dataset, out, conversational=conversational)
        for split in ("train", "test"):
            table = pq.read_table(out / f"{split}.parquet")
            assert table.column_names == ["prompt", "chosen", "rejected"]
            jsonl = [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]
            assert table.to_pylist() == jsonl


def test_datasets_loads_the_export_in_trls_preference_format(sample_dataset: PreferenceDataset,
                                                             tmp_path: Path) -> None:
    import datasets
    for conversational in (False, True):
        out = tmp_path / str(conversational)
        export_dataset(sample_dataset, out, conversational=conversational)
        splits = {name: str(out / f"{name}.jsonl") for name, rows in
                  (("train", sample_dataset.train), ("test", sample_dataset.test)) if rows}  # empty: no table
        loaded = datasets.load_dataset("json", data_files=splits, cache_dir=str(tmp_path / "cache"))
        assert sorted(loaded["train"].column_names) == ["chosen", "prompt", "rejected"]
        assert loaded["train"].num_rows == len(sample_dataset.train)
        if conversational:
            assert loaded["train"][0]["prompt"][0]["role"] == "user"


def test_empty_input_gives_an_empty_dataset(embedder: Any, tmp_path: Path) -> None:
    dataset = build_dataset([], embedder, {"squad": ["Who?"]}, PreferencesConfig())
    assert dataset.train == dataset.test == [] and dataset.report.n_out == 0
    assert set(dataset.report.removed.values()) == {0}
    manifest = export_dataset(dataset, tmp_path / "empty")
    assert manifest["rows"] == {"train": 0, "test": 0} and (tmp_path / "empty" / "train.jsonl").read_bytes() == b""
