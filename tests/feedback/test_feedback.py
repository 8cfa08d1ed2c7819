from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from reasonloop.errors import InputError
from reasonloop.feedback.records import FeedbackLoad, FeedbackRecord, append_feedback, load_feedback
from reasonloop.feedback.screening import screen_feedback

from ..conftest import ROOT

RUN = "3f1c0a9e5b7d4c2a8e6f1b0d9c7a5e31"


def row(**overrides: Any) -> dict[str, Any]:
    base = {"question_id": "q1", "question": "Where does the Rhine end?", "answer": "In the North Sea.",
            "rating": "up", "timestamp": "2025-11-20T09:00:00Z", "source_run_id": RUN}
    return {k: v for k, v in {**base, **overrides}.items() if v is not None}


def jsonl_bytes(*rows: dict[str, Any] | bytes) -> bytes:
    return b"".join(r if isinstance(r, bytes) else json.dumps(r).encode() + b"\n" for r in rows)


def reasons(loaded: FeedbackLoad) -> dict[str, str]:
    return {r.where(): r.reason for r in loaded.rejects}


def test_the_sample_folder_loads_without_rejects() -> None:
    loaded = load_feedback(ROOT / "data" / "feedback", known_run_ids={RUN, "8d2e4f6a1c3b5d7e9f0a2b4c6d8e0f12"})
    assert loaded.rejects == []
    assert len(loaded.records) == 10 and loaded.origins[0] == "sample.csv:2" and loaded.origins[-1] == "sample.jsonl:7"
    by_origin = dict(zip(loaded.origins, loaded.records, strict=True))
    assert by_origin["sample.csv:2"].rating == 4  # a CSV cell "4" is the integer rating
    assert by_origin["sample.csv:4"].source_run_id is None and by_origin["sample.csv:4"].polarity == "neutral"
    assert by_origin["sample.csv:4"].comment == 'fine, but say "basin" vs "forest"'
    assert by_origin["sample.jsonl:1"].corrected_answer == "O"


def test_every_malformed_jsonl_row_is_quarantined_with_file_line_and_field(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(jsonl_bytes(
        row(),                                                  # 1 good
        row(answer=None) | {"question_id": "q2"},               # 2 missing answer
        row(rating="meh"),                                      # 3 bad rating
        row(rating=7),                                          # 4 rating out of range
        row(rating=True),                                       # 5 a bool is not a rating
        b'{"question_id": "q6", "comment": "caf\xe9", "x": 1}\n',  # 6 Latin-1 byte inside a string
        b'{"question_id": \xff}\n',                             # 7 bad byte outside a string
        b'{"question_id": "q8",\n',                             # 8 malformed JSON
        row(answer="   "),                                      # 9 empty answer
        row(source_run_id="deadbeef"),                          # 10 unknown run
        b"[1, 2]\n",                                            # 11 not an object
        row(timestamp="yesterday"),                             # 12 bad timestamp
        row(colour="red"),                                      # 13 unknown field
        row(rating=2, question_id="q14"),                       # 14 good, after all the bad ones
    ))
    loaded = load_feedback(tmp_path, known_run_ids={RUN})
    assert [r.question_id for r in loaded.records] == ["q1", "q14"] and loaded.origins == ["a.jsonl:1", "a.jsonl:14"]
    got = reasons(loaded)
    assert got["a.jsonl:2"] == "field 'answer': Field required"
    assert got["a.jsonl:3"].startswith("field 'rating': Value error, rating must be 'up', 'down' or an integer from 1")
    assert "got 'meh'" in got["a.jsonl:3"] and "got 7" in got["a.jsonl:4"] and "got True" in got["a.jsonl:5"]
    assert got["a.jsonl:6"] == "field 'comment': not valid UTF-8 (byte 0xe9): re-save the file as UTF-8"
    assert got["a.jsonl:7"] == "not valid UTF-8 (byte 0xff at offset 16 of the line): re-save the file as UTF-8"
    assert got["a.jsonl:8"].startswith("malformed JSON")
    assert got["a.jsonl:9"] == "field 'answer': String should have at least 1 character"
    assert got["a.jsonl:10"] == ("field 'source_run_id': unknown run id 'deadbeef' (not a run of this tracking "
                                 "store)")
    assert got["a.jsonl:11"] == "expected a JSON object, got list"
    assert got["a.jsonl:12"].startswith("field 'timestamp': Input should be a valid datetime")
    assert got["a.jsonl:13"] == "field 'colour': Extra inputs are not permitted"
    assert len(loaded.rejects) == 12  # nothing dropped silently: 14 rows = 2 records + 12 rejects


def test_unknown_run_ids_pass_when_no_run_list_is_given(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(jsonl_bytes(row(source_run_id="deadbeef")))
    assert len(load_feedback(tmp_path).records) == 1


def test_malformed_csv_rows_are_quarantined(tmp_path: Path) -> None:
    header = b"question_id,question,answer,rating,corrected_answer,timestamp,source_run_id\n"
    (tmp_path / "b.csv").write_bytes(
        b"\xef\xbb\xbf" + header                                          # 1 header behind a BOM
        + b"q1,Where?,North Sea,5,,2025-11-20T09:00:00,\n"               # 2 good; naive time = UTC
        + b"q2,Where?,,down,,2025-11-20T09:00:00,\n"                      # 3 empty answer
        + b"q3,Where?,North Sea,10,,2025-11-20T09:00:00,\n"               # 4 bad rating
        + b"q4,Where?,Nord\xfcsee,up,,2025-11-20T09:00:00,\n"             # 5 Latin-1 byte
        + b"q5,Where?,North Sea,up,,2025-11-20T09:00:00,,extra\n"         # 6 too many values
        + b'q6,"Where,\nexactly?",North Sea,up,,2025-11-20T09:00:00,\n'   # 7-8 a quoted newline: one row
        + b"q7,Where?,North Sea,up\n"                                     # 9 too few values
    )
    loaded = load_feedback(tmp_path)
    assert loaded.origins == ["b.csv:2", "b.csv:7"]
    assert loaded.records[0].timestamp == datetime(2025, 11, 20, 9, tzinfo=UTC)
    assert loaded.records[1].question == "Where,\nexactly?"
    assert reasons(loaded) == {
        "b.csv:3": "field 'answer': String should have at least 1 character",
        "b.csv:4": "field 'rating': Value error, rating must be 'up', 'down' or an integer from 1 to 5, got '10'",
        "b.csv:5": "field 'answer': not valid UTF-8 (byte 0xfc): re-save the file as UTF-8",
        "b.csv:6": "8 values but the header has 7 columns",
        "b.csv:9": "field 'timestamp': Field required",
    }


def test_a_missing_folder_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="feedback folder not found"):
        load_feedback(tmp_path / "nope")


def test_records_are_strict_and_ratings_have_polarity() -> None:
    record = FeedbackRecord.model_validate(row(rating=" UP ", timestamp="2025-11-20T10:00:00+01:00"))
    assert record.rating == "up" and record.timestamp == datetime(2025, 11, 20, 9, tzinfo=UTC)
    assert [FeedbackRecord.model_validate(row(rating=r)).polarity for r in (1, 2, 3, 4, 5, "down")] == \
        ["negative", "negative", "neutral", "positive", "positive", "negative"]
    with pytest.raises(ValidationError, match="rating"):
        FeedbackRecord.model_validate(row(rating=2.5))


def test_append_round_trips_and_survives_a_torn_last_line(tmp_path: Path) -> None:
    first = FeedbackRecord.model_validate(row())
    path = append_feedback(tmp_path, first)
    assert path == tmp_path / "cli.jsonl" and path.read_bytes().endswith(b"\n")
    with path.open("ab") as handle:
        handle.write(b'{"question_id": "torn", "quest')  # a crash mid-write, by some other writer
    second = FeedbackRecord.model_validate(row(question_id="q2", rating=4, corrected_answer="The North Sea."))
    append_feedback(tmp_path, second)
    loaded = load_feedback(tmp_path)
    assert loaded.records == [first, second] and loaded.origins == ["cli.jsonl:1", "cli.jsonl:3"]
    assert list(reasons(loaded)) == ["cli.jsonl:2"] and reasons(loaded)["cli.jsonl:2"].startswith("malformed JSON")


def test_great_expectations_screen_quarantines_duplicates_and_lossy_text(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(jsonl_bytes(row(), row(answer="Nords\ufffde"), row(question_id="q3")))
    (tmp_path / "b.jsonl").write_bytes(jsonl_bytes(row()))  # the same feedback submitted twice
    screened = screen_feedback(load_feedback(tmp_path))
    assert screened.origins == ["a.jsonl:1", "a.jsonl:3"]
    assert reasons(screened) == {
        "a.jsonl:2": "text contains U+FFFD replacement characters: it was decoded lossily before it was saved; "
                     "re-export it as UTF-8",
        "b.jsonl:1": "duplicate of a.jsonl:1 (the first one is kept)",
    }
