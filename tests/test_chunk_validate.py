from __future__ import annotations

import pytest

from reasonloop.errors import InputError
from reasonloop.schemas import Document, content_hash
from reasonloop.settings import ChunkingConfig
from tasks.chunk import chunk_documents
from tasks.validate import validate_documents


def doc(doc_id: str, text: str) -> Document:
    return Document(id=doc_id, text=text, source=f"{doc_id}.txt", content_hash=content_hash(text))


def test_chunks_carry_offsets_and_stable_ids() -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(60))
    chunks = chunk_documents.fn([doc("d", text)], ChunkingConfig(chunk_size=200, chunk_overlap=40))
    assert len(chunks) > 5
    for c in chunks:
        assert text[c.start:c.end] == c.text
        assert c.id == f"d::{c.position}::{c.content_hash[:12]}"
    again = chunk_documents.fn([doc("d", text)], ChunkingConfig(chunk_size=200, chunk_overlap=40))
    assert [c.id for c in again] == [c.id for c in chunks]
    changed = chunk_documents.fn([doc("d", text.replace("number 59", "number 99"))],
                                 ChunkingConfig(chunk_size=200, chunk_overlap=40))
    assert changed[0].id == chunks[0].id and changed[-1].id != chunks[-1].id


def test_validation_passes_good_documents() -> None:
    assert validate_documents.fn([doc("a", "x"), doc("b", "y")]) == 2


def test_validation_names_duplicate_ids_and_empty_texts() -> None:
    with pytest.raises(InputError) as err:
        validate_documents.fn([doc("a", "x"), doc("a", "y"), doc("c", "   ")])
    message = str(err.value)
    assert "nothing was indexed" in message
    assert "expect_column_values_to_be_unique on 'id' failed for 2 row(s)" in message
    assert "source=a.txt" in message
    assert "expect_column_values_to_be_between on 'n_chars' failed for 1 row(s): source=c.txt, id=c" in message
