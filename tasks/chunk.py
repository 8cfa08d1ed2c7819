"""Chunking with LangChain's recursive character splitter; chunk ids are stable and content-derived."""

from __future__ import annotations

from langchain_text_splitters import RecursiveCharacterTextSplitter
from prefect import task

from reasonloop.schemas import Chunk, Document, content_hash
from reasonloop.settings import ChunkingConfig


def chunk_id(doc_id: str, position: int, digest: str) -> str:
    """doc id + position + content hash: a changed chunk gets a new id, an unchanged one keeps it."""
    return f"{doc_id}::{position}::{digest[:12]}"


@task(name="chunk-documents")
def chunk_documents(documents: list[Document], cfg: ChunkingConfig) -> list[Chunk]:
    splitter = RecursiveCharacterTextSplitter(chunk_size=cfg.chunk_size, chunk_overlap=cfg.chunk_overlap,
                                              add_start_index=True)
    chunks: list[Chunk] = []
    for doc in documents:
        pieces = splitter.create_documents([doc.text])
        for position, piece in enumerate(pieces):
            start = int(piece.metadata["start_index"])
            digest = content_hash(piece.page_content)
            chunks.append(Chunk(id=chunk_id(doc.id, position, digest), doc_id=doc.id, text=piece.page_content,
                                title=doc.title, source=doc.source, position=position, start=max(start, 0),
                                end=max(start, 0) + len(piece.page_content), content_hash=digest,
                                metadata=doc.metadata))
    return chunks
