from __future__ import annotations

import json
from pathlib import Path

import pytest

from reasonloop.errors import EmptyInputError, InputError
from reasonloop.retrieval.config import CorpusConfig, JsonlFields
from reasonloop.retrieval.corpus_scan import load_documents
from reasonloop.retrieval.record_sets import load_questions

from ..conftest import write_jsonl
from ..support.pdf import text_pdf


def reasons(loaded) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {r.where(): r.reason for r in loaded.rejects}


def test_reads_every_source_type_in_path_order(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("intro\n# Title B\nbody", encoding="utf-8")
    (tmp_path / "a.txt").write_text("plain text", encoding="utf-8")
    (tmp_path / "page.html").write_text(
        "<html><head><title>Page T</title><style>p {color: red}</style></head>"
        "<body><p>First &amp; para.</p><script>alert(1)</script><div>Second</div></body></html>", encoding="utf-8")
    (tmp_path / "doc.pdf").write_bytes(text_pdf("Hello from a PDF page", title="Pdf T"))
    (tmp_path / "recs.json").write_text(json.dumps([{"id": "j1", "text": "json one"}, {"id": "j2", "text": "two"}]))
    write_jsonl(tmp_path / "c.jsonl", [{"id": "r1", "text": "record one", "title": "R", "lang": "en"}])
    write_jsonl(tmp_path / "beir" / "corpus.jsonl",
                [{"_id": "b1", "title": "BT", "text": "beir text", "metadata": {"url": "u", "nested": {"x": 1}}}])
    (tmp_path / "ignored.csv").write_text("x,y", encoding="utf-8")
    loaded = load_documents(tmp_path, CorpusConfig(jsonl=JsonlFields(metadata_fields=["lang"])))
    assert loaded.rejects == []
    by_id = {d.id: d for d in loaded.documents}
    assert [d.id for d in loaded.documents] == ["a.txt", "b1", "r1", "doc.pdf", "page.html", "j1", "j2", "sub/b.md"]
    assert by_id["sub/b.md"].title == "Title B" and by_id["a.txt"].title == "a"
    assert by_id["page.html"].title == "Page T" and by_id["page.html"].text == "First & para.\nSecond"
    assert by_id["doc.pdf"].text == "Hello from a PDF page" and by_id["doc.pdf"].title == "Pdf T"
    assert by_id["r1"].metadata == {"lang": "en"} and by_id["r1"].source == "c.jsonl:1"
    assert by_id["b1"].title == "BT" and by_id["b1"].metadata == {"url": "u"} and by_id["j2"].source == "recs.json"
    assert len({d.content_hash for d in loaded.documents}) == len(loaded.documents)


def test_configurable_record_fields(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "c.jsonl", [{"_id": 7, "body": "text"}])
    loaded = load_documents(tmp_path, CorpusConfig(jsonl=JsonlFields(id_field="_id", text_field="body")))
    assert loaded.documents[0].id == "7" and loaded.documents[0].text == "text"


def test_bad_files_and_records_are_quarantined_with_reasons(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("fine", encoding="utf-8")
    (tmp_path / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (tmp_path / "empty.md").write_bytes(b"")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9 au lait")
    with (tmp_path / "huge.txt").open("wb") as fh:  # 50 MB, sparse: refused by size before it is read
        fh.truncate(50 * 1024 * 1024)
    (tmp_path / "lines.jsonl").write_text('{"id": "a", "text": "ok"}\n{"id": "b", "text": \n[1, 2]\n'
                                          '{"id": "c"}\n{"id": "d", "text": 5}\n{"id": " ", "text": "t"}\n')
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a pdf")
    (tmp_path / "broken.json").write_text("[{", encoding="utf-8")
    loaded = load_documents(tmp_path, CorpusConfig(include=["*.txt", "*.md", "*.jsonl", "*.pdf", "*.json"]))
    assert sorted(d.id for d in loaded.documents) == ["a", "good.txt"]
    found = reasons(loaded)
    assert found["binary.txt"] == "binary content (NUL bytes): not a text file"
    assert found["empty.md"] == "empty file"
    assert found["latin1.txt"] == "not valid UTF-8 at byte 3; convert the file to UTF-8"
    assert found["huge.txt"] == "file is 52,428,800 bytes, over corpus.max_file_bytes (20,000,000)"
    assert found["lines.jsonl:2"].startswith("malformed JSON (Expecting value at column")
    assert found["lines.jsonl:3"] == "expected a JSON object, got list"
    assert found["lines.jsonl:4"] == "missing required field 'text'"
    assert found["lines.jsonl:5"] == "field 'text' must be a string, got int"
    assert found["lines.jsonl:6"].startswith("field 'id': String should have at least 1 character")
    assert found["broken.pdf"].startswith("unreadable PDF")
    assert found["broken.json:1"].startswith("malformed JSON")
    assert len(found) == 11


def test_unsupported_type_matched_by_include_is_quarantined(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x", encoding="utf-8")
    (tmp_path / "b.docx").write_bytes(b"PK")
    loaded = load_documents(tmp_path, CorpusConfig(include=["*"]))
    assert reasons(loaded)["b.docx"].startswith("unsupported file type '.docx' (allowed: .htm, .html")


def test_missing_corpus_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nowhere: corpus folder not found"):
        load_documents(tmp_path / "nowhere", CorpusConfig())


def test_empty_corpus(tmp_path: Path) -> None:
    with pytest.raises(EmptyInputError, match="no documents matching"):
        load_documents(tmp_path, CorpusConfig())


def test_questions_load_and_validate(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "q.jsonl", [
        {"id": "1", "question": "Who?", "reference": "Me", "gold_doc_ids": ["d#0"]},
        {"id": "2", "question": "What?", "reference": "That"},
    ])
    questions = load_questions(path)
    assert [q.id for q in questions] == ["1", "2"] and questions[1].gold_doc_ids == []


@pytest.mark.parametrize(("records", "message"), [
    ([{"id": "1", "question": "Q?"}], r"q\.jsonl:1: Field required \(field 'reference'\)"),
    ([{"id": "1", "question": "  ", "reference": "r"}], r"q\.jsonl:1: .*at least 1 character \(field 'question'\)"),
    ([{"id": "1", "question": "Q", "reference": "r", "extra": 1}], r"q\.jsonl:1: Extra inputs .*\(field 'extra'\)"),
    ([{"id": "1", "question": "Q", "reference": "r"}] * 2, r"q\.jsonl:2: duplicate id '1' \(first on line 1\)"),
])
def test_bad_question_rows_are_named(tmp_path: Path, records: list[dict], message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_questions(write_jsonl(tmp_path / "q.jsonl", records))


def test_malformed_question_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"id": "1", "question": "Q", "reference": "r"}\n{"id": \n', encoding="utf-8")
    with pytest.raises(InputError, match=r"q\.jsonl:2: malformed JSON"):
        load_questions(path)


def test_empty_question_set(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(EmptyInputError, match="question set is empty"):
        load_questions(path)


def test_missing_question_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="question set not found"):
        load_questions(tmp_path / "missing.jsonl")
