"""Chunking with LangChain's recursive splitter, sized in characters or in the encoder's tokens; chunk ids are
stable and content-derived, offsets point into the document's text."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from langchain_text_splitters import RecursiveCharacterTextSplitter

from reasonloop.retrieval.config import ChunkingConfig
from reasonloop.schemas import Chunk, Document, content_hash


def chunk_id(doc_id: str, position: int, digest: str) -> str:
    """doc id + position + content hash: a changed chunk gets a new id, an unchanged one keeps it."""
    return f"{doc_id}::{position}::{digest[:12]}"


def located(text: str, pieces: list[str], doc_id: str, length: Callable[[str], int],
            overlap: int) -> Iterator[tuple[int, str]]:
    """(start offset, piece) for pieces the splitter cut from `text` in order. A piece starts after the previous
    one and may reach back into it by at most `overlap` units, which pins it down even in repetitive text.
    Computed here rather than by the splitter, whose offsets assume the overlap is counted in characters."""
    start, end = -1, 0
    for position, piece in enumerate(pieces):
        found = text.find(piece, start + 1)
        while 0 <= found < end and length(text[found:end]) > overlap:
            found = text.find(piece, found + 1)
        if found < 0:
            raise ValueError(f"chunk {position} of {doc_id}: the splitter returned text not found in the document")
        start, end = found, found + len(piece)
        yield start, piece


def length_function(cfg: ChunkingConfig, count_tokens: Callable[[str], int] | None) -> Callable[[str], int]:
    if cfg.unit == "chars":
        return len
    if count_tokens is None:
        raise ValueError("chunking.unit is 'tokens' but no tokenizer was given: pass the embedder's count_tokens")
    return count_tokens


def chunk_documents(documents: list[Document], cfg: ChunkingConfig,
                    count_tokens: Callable[[str], int] | None = None) -> list[Chunk]:
    """Split every document; with `cfg.unit == "tokens"`, sizes are counted by `count_tokens` (the encoder's
    tokenizer: the title prefix and two special tokens come on top, see ChunkingConfig)."""
    length = length_function(cfg, count_tokens)
    splitter = RecursiveCharacterTextSplitter(chunk_size=cfg.chunk_size, chunk_overlap=cfg.chunk_overlap,
                                              length_function=length)
    chunks: list[Chunk] = []
    for doc in documents:
        pieces = splitter.split_text(doc.text)
        for position, (start, text) in enumerate(located(doc.text, pieces, doc.id, length, cfg.chunk_overlap)):
            digest = content_hash(text)
            chunks.append(Chunk(id=chunk_id(doc.id, position, digest), doc_id=doc.id, text=text, title=doc.title,
                                source=doc.source, position=position, start=start, end=start + len(text),
                                content_hash=digest, metadata=doc.metadata))
    return chunks
