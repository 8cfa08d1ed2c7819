"""Dense retrieval from Chroma: one encoder call and one query call per batch of questions."""

from __future__ import annotations

from chromadb.api.models.Collection import Collection
from prefect import task
from prefect.cache_policies import NO_CACHE

from reasonloop.embeddings import Embedder
from reasonloop.retry import IO_RETRIES
from reasonloop.schemas import Question, RetrievedChunk


@task(name="retrieve-chunks", **IO_RETRIES, cache_policy=NO_CACHE)
def retrieve_chunks(questions: list[Question], collection: Collection, embedder: Embedder,
                    top_k: int) -> list[list[RetrievedChunk]]:
    """Top-k chunks per question, best first, score = cosine similarity."""
    if not questions:
        return []
    vectors = embedder.embed([q.question for q in questions])
    found = collection.query(query_embeddings=vectors, n_results=top_k,
                             include=["documents", "metadatas", "distances"])
    results = []
    for ids, docs, metas, dists in zip(found["ids"], found["documents"] or [], found["metadatas"] or [],
                                       found["distances"] or [], strict=True):
        results.append([RetrievedChunk(chunk_id=cid, doc_id=str(meta["doc_id"]), text=doc or "",
                                       title=str(meta.get("title", "")), score=1.0 - float(dist), rank=rank)
                        for rank, (cid, doc, meta, dist) in enumerate(zip(ids, docs, metas, dists, strict=True), 1)])
    return results

