from __future__ import annotations

from pathlib import Path

import pytest

from reasonloop.errors import EmptyInputError, InputError
from reasonloop.settings import CorpusConfig, JsonlFields
from tasks.load import load_documents, load_questions

from .conftest import write_jsonl


def test_reads_md_txt_and_jsonl_in_path_order(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("intro\n# Title B\nbody", encoding="utf-8")
    (tmp_path / "a.txt").write_text("plain text", encoding="utf-8")
    (tmp_path / "ignored.csv").write_text("x,y", encoding="utf-8")
    write_jsonl(tmp_path / "c.jsonl", [{"id": "r1", "text": "record one", "title": "R", "lang": "en"}])
    cfg = CorpusConfig(jsonl=JsonlFields(metadata_fields=["lang"]))
    docs = load_documents.fn(tmp_path, cfg)
    assert [d.id for d in docs] == ["a.txt", "r1", "sub/b.md"]
    assert docs[2].title == "Title B" and docs[0].title == "a"
    assert docs[1].metadata == {"lang": "en"} and docs[1].source == "c.jsonl:1"
    assert len({d.content_hash for d in docs}) == 3


def test_configurable_jsonl_fields(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "c.jsonl", [{"_id": 7, "body": "text"}])
    docs = load_documents.fn(tmp_path, CorpusConfig(jsonl=JsonlFields(id_field="_id", text_field="body")))
    assert docs[0].id == "7" and docs[0].text == "text"


def test_missing_corpus_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nowhere: corpus folder not found"):
        load_documents.fn(tmp_path / "nowhere", CorpusConfig())


def test_empty_corpus(tmp_path: Path) -> None:
    with pytest.raises(EmptyInputError, match="no documents matching"):
        load_documents.fn(tmp_path, CorpusConfig())


def test_malformed_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "a", "text": "ok"}\n{"id": "b", "text": \n', encoding="utf-8")
    with pytest.raises(InputError, match=r"c\.jsonl:2: malformed JSON"):
        load_documents.fn(tmp_path, CorpusConfig())


def test_missing_text_field_is_named(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "c.jsonl", [{"id": "a"}])
    with pytest.raises(InputError, match=r"c\.jsonl:1: missing required field \(field 'text'\)"):
        load_documents.fn(tmp_path, CorpusConfig())


def test_invalid_utf8_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9 latin-1")
    with pytest.raises(InputError, match=r"bad\.txt: not valid UTF-8 at byte 3"):
        load_documents.fn(tmp_path, CorpusConfig())


def test_questions_load_and_validate(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "q.jsonl", [
        {"id": "1", "question": "Who?", "reference": "Me", "gold_doc_ids": ["d#0"]},
        {"id": "2", "question": "What?", "reference": "That"},
    ])
    questions = load_questions.fn(path)
    assert [q.id for q in questions] == ["1", "2"] and questions[1].gold_doc_ids == []


@pytest.mark.parametrize(("records", "message"), [
    ([{"id": "1", "question": "Q?"}], r"q\.jsonl:1: Field required \(field 'reference'\)"),
    ([{"id": "1", "question": "  ", "reference": "r"}], r"q\.jsonl:1: .*at least 1 character \(field 'question'\)"),
    ([{"id": "1", "question": "Q", "reference": "r", "extra": 1}], r"q\.jsonl:1: Extra inputs .*\(field 'extra'\)"),
    ([{"id": "1", "question": "Q", "reference": "r"}] * 2, r"q\.jsonl:2: duplicate id '1' \(first on line 1\)"),
])
def test_bad_question_rows_are_named(tmp_path: Path, records: list[dict], message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_questions.fn(write_jsonl(tmp_path / "q.jsonl", records))


def test_empty_question_set(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(EmptyInputError, match="question set is empty"):
        load_questions.fn(path)


def test_missing_question_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="question set not found"):
        load_questions.fn(tmp_path / "missing.jsonl")
