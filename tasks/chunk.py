"""Chunking with LangChain's recursive splitter, sized in characters or in the encoder's tokens; chunk ids are
stable and content-derived, offsets point into the document's text."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from langchain_text_splitters import RecursiveCharacterTextSplitter
from prefect import task
from prefect.cache_policies import NO_CACHE

from reasonloop.schemas import Chunk, Document, content_hash
from reasonloop.settings import ChunkingConfig


def chunk_id(doc_id: str, position: int, digest: str) -> str:
    """doc id + position + content hash: a changed chunk gets a new id, an unchanged one keeps it."""
    return f"{doc_id}::{position}::{digest[:12]}"


def located(text: str, pieces: list[str], doc_id: str) -> Iterator[tuple[int, str]]:
    """(start offset, piece) for pieces the splitter cut from `text` in order. Computed here rather than by the
    splitter, whose offsets assume the overlap is counted in characters."""
    start = -1
    for position, piece in enumerate(pieces):
        start = text.find(piece, start + 1)
        if start < 0:
            raise ValueError(f"chunk {position} of {doc_id}: the splitter returned text not found in the document")
        yield start, piece


def splitter_for(cfg: ChunkingConfig, count_tokens: Callable[[str], int] | None) -> RecursiveCharacterTextSplitter:
    if cfg.unit == "chars":
        return RecursiveCharacterTextSplitter(chunk_size=cfg.chunk_size, chunk_overlap=cfg.chunk_overlap)
    if count_tokens is None:
        raise ValueError("chunking.unit is 'tokens' but no tokenizer was given: pass the embedder's count_tokens")
    return RecursiveCharacterTextSplitter(chunk_size=cfg.chunk_size, chunk_overlap=cfg.chunk_overlap,
                                          length_function=count_tokens)


@task(name="chunk-documents", cache_policy=NO_CACHE)
def chunk_documents(documents: list[Document], cfg: ChunkingConfig,
                    count_tokens: Callable[[str], int] | None = None) -> list[Chunk]:
    """Split every document; with `cfg.unit == "tokens"`, sizes are counted by `count_tokens` (the encoder's
    tokenizer, so a chunk never exceeds what the encoder reads)."""
    splitter = splitter_for(cfg, count_tokens)
    chunks: list[Chunk] = []
    for doc in documents:
        for position, (start, text) in enumerate(located(doc.text, splitter.split_text(doc.text), doc.id)):
            digest = content_hash(text)
            chunks.append(Chunk(id=chunk_id(doc.id, position, digest), doc_id=doc.id, text=text, title=doc.title,
                                source=doc.source, position=position, start=start, end=start + len(text),
                                content_hash=digest, metadata=doc.metadata))
    return chunks
