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
            start, text = int(piece.metadata["start_index"]), piece.page_content
            if start < 0 or doc.text[start:start + len(text)] != text:  # offsets must point at the chunk's text
                raise ValueError(f"chunk {position} of {doc.id}: the splitter lost its offset")
            digest = content_hash(text)
            chunks.append(Chunk(id=chunk_id(doc.id, position, digest), doc_id=doc.id, text=text, title=doc.title,
                                source=doc.source, position=position, start=start, end=start + len(text),
                                content_hash=digest, metadata=doc.metadata))
    return chunks
