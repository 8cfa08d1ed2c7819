from __future__ import annotations

from typing import Any

import pytest

from reasonloop.errors import InputError
from reasonloop.retrieval.chunking import chunk_documents
from reasonloop.retrieval.config import ChunkingConfig, CorpusConfig
from reasonloop.retrieval.screening import screen_documents
from reasonloop.schemas import Document, LoadedCorpus, Reject, content_hash
from reasonloop.validation import check_bad_fraction


def doc(doc_id: str, text: str, source: str | None = None) -> Document:
    return Document(id=doc_id, text=text, source=source or f"{doc_id}.txt", content_hash=content_hash(text))


def test_chunks_carry_offsets_and_stable_ids() -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(60))
    chunks = chunk_documents([doc("d", text)], ChunkingConfig(chunk_size=200, chunk_overlap=40))
    assert len(chunks) > 5
    for c in chunks:
        assert text[c.start:c.end] == c.text
        assert c.id == f"d::{c.position}::{c.content_hash[:12]}"
    again = chunk_documents([doc("d", text)], ChunkingConfig(chunk_size=200, chunk_overlap=40))
    assert [c.id for c in again] == [c.id for c in chunks]
    changed = chunk_documents([doc("d", text.replace("number 59", "number 99"))],
                                 ChunkingConfig(chunk_size=200, chunk_overlap=40))
    assert changed[0].id == chunks[0].id and changed[-1].id != chunks[-1].id


def test_token_chunks_fit_the_encoder_and_overlap(embedder: Any) -> None:
    text = " ".join(f"The committee met on day {i} and postponed the decision again." for i in range(40))
    cfg = ChunkingConfig(unit="tokens", chunk_size=64, chunk_overlap=16)
    chunks = chunk_documents([doc("d", text)], cfg, embedder.count_tokens)
    assert len(chunks) > 5
    sizes = [embedder.count_tokens(c.text) for c in chunks]
    assert max(sizes) <= 64 and min(sizes[:-1]) > 32  # sized in tokens, not characters (64 chars ~ 12 tokens)
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert text[after.start:after.end] == after.text and before.start < after.start < before.end  # overlap


@pytest.mark.parametrize(("overlap", "starts"), [(0, [0, 12, 24]), (6, [0, 6, 12, 18, 24])])
def test_offsets_in_repetitive_text_cover_the_document(overlap: int, starts: list[int]) -> None:
    text = "Home. Home. Home. Home. Home. Home."
    chunks = chunk_documents([doc("d", text)], ChunkingConfig(chunk_size=12, chunk_overlap=overlap))
    assert [c.start for c in chunks] == starts and chunks[-1].end == len(text)


def test_tokens_leave_room_for_the_encoders_special_tokens() -> None:
    with pytest.raises(ValueError, match="special tokens"):
        ChunkingConfig(unit="tokens", chunk_size=256, chunk_overlap=0)


def test_token_chunking_without_a_tokenizer_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="count_tokens"):
        chunk_documents([doc("d", "text")], ChunkingConfig(unit="tokens", chunk_size=64, chunk_overlap=8))


def test_screen_keeps_good_documents() -> None:
    loaded = LoadedCorpus(documents=[doc("a", "x"), doc("b", "y")])
    assert screen_documents(loaded, CorpusConfig()) == loaded


def test_screen_quarantines_duplicates_empty_oversized_and_lossy_rows() -> None:
    docs = [doc("a", "x", "f.jsonl:1"), doc("a", "y", "f.jsonl:2"), doc("c", "   "), doc("d", "z" * 50),
            doc("e", "caf\ufffd"), doc("f", "fine")]
    screened = screen_documents(LoadedCorpus(documents=docs), CorpusConfig(max_doc_chars=40))
    assert [d.id for d in screened.documents] == ["a", "f"] and screened.documents[0].text == "x"
    reasons = {r.where(): r.reason for r in screened.rejects}
    assert reasons == {
        "f.jsonl:2": "duplicate id 'a' (the first one in path order is kept)",
        "c.txt": "empty text",
        "d.txt": "text over corpus.max_doc_chars (40)",
        "e.txt": "text contains U+FFFD replacement characters: it was decoded lossily before reaching the corpus",
    }


def test_bad_fraction_gate() -> None:
    def gate(n_good: int, rejects: list[Reject], limit: float) -> float:
        return check_bad_fraction(n_good, rejects, limit, "corpus.max_bad_fraction", "nothing was indexed")

    rejects = [Reject(source="b.txt", reason="empty file")]
    assert gate(19, rejects, 0.05) == pytest.approx(0.05)
    with pytest.raises(InputError, match=r"1 of 20 inputs are bad \(5.0%.*\n  b.txt: empty file"):
        gate(19, rejects, 0.04)
    with pytest.raises(InputError, match="nothing was indexed"):
        gate(0, [Reject(source="x", reason="r")], 1.0)
