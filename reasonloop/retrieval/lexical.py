"""BM25 over chunk texts with bm25s (sparse matrices), saved beside each index version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from reasonloop.retrieval.config import BM25Config

IDS_FILE = "chunk_ids.json"


def _stemmer(cfg: BM25Config) -> Any:
    if cfg.stemmer == "none":
        return None
    import Stemmer

    return Stemmer.Stemmer(cfg.stemmer)


class LexicalIndex:
    """A bm25s index plus the chunk id and metadata of each row (for filters and results)."""

    def __init__(self, bm25: Any, ids: list[str], metadata: list[dict[str, Any]], cfg: BM25Config) -> None:
        self._bm25, self.ids, self.metadata, self.cfg = bm25, ids, metadata, cfg
        self._stem = _stemmer(cfg)

    @classmethod
    def build(cls, ids: list[str], texts: list[str], metadata: list[dict[str, Any]], cfg: BM25Config) -> LexicalIndex:
        import bm25s

        index = bm25s.BM25(k1=cfg.k1, b=cfg.b, method=cfg.method)
        tokens = bm25s.tokenize(texts, stopwords="en", stemmer=_stemmer(cfg), show_progress=False)
        index.index(tokens, show_progress=False)
        return cls(index, ids, metadata, cfg)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._bm25.save(str(directory), show_progress=False)
        (directory / IDS_FILE).write_text(json.dumps({"ids": self.ids, "metadata": self.metadata,
                                                      "config": self.cfg.model_dump()}), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex:
        import bm25s

        sidecar = json.loads((directory / IDS_FILE).read_text(encoding="utf-8"))
        bm25 = bm25s.BM25.load(str(directory), show_progress=False)
        return cls(bm25, sidecar["ids"], sidecar["metadata"], BM25Config.model_validate(sidecar["config"]))

    def search(self, queries: list[str], k: int,
               filters: dict[str, Any] | None = None) -> list[list[tuple[str, float]]]:
        """Top-k (chunk id, BM25 score) per query, best first; rows not matching `filters` never rank."""
        import bm25s

        if not queries or not self.ids:
            return [[] for _ in queries]
        mask = None
        if filters:
            mask = np.array([all(m.get(key) == value for key, value in filters.items()) for m in self.metadata],
                            dtype=np.float32)
            if not mask.any():
                return [[] for _ in queries]
        tokens = bm25s.tokenize(queries, stopwords="en", stemmer=self._stem, show_progress=False)
        k = min(k, len(self.ids) if mask is None else int(mask.sum()))
        rows, scores = self._bm25.retrieve(tokens, k=k, show_progress=False, weight_mask=mask, n_threads=1)
        return [[(self.ids[int(r)], float(s)) for r, s in zip(row, score, strict=True) if s > 0]
                for row, score in zip(rows, scores, strict=True)]
