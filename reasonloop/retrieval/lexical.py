"""BM25 over chunk texts with bm25s (sparse matrices), saved beside each index version and memory-mapped when read:
the score matrix stays on disk, and a row's chunk id and metadata are read from `rows.sqlite` only for the rows a
query ranks (or, for a metadata filter, once per filter). Built a batch at a time by `lexical_build.py`."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from reasonloop.errors import InputError
from reasonloop.retrieval.config import BM25Config
from reasonloop.retrieval.lexical_build import CONFIG_FILE, LexicalBuilder, open_rows, stemmer_of

MASKS_KEPT = 8  # filter masks cached per index (one float per row each)


class LexicalIndex:
    """A bm25s index plus the chunk id and metadata of each row (for filters and results)."""

    def __init__(self, bm25: Any, directory: Path, cfg: BM25Config) -> None:
        self.bm25, self.cfg, self.directory = bm25, cfg, directory
        self.n_rows = int(bm25.scores["num_docs"])
        self.rows = open_rows(directory)
        self.stemmer = stemmer_of(cfg)
        self.guard = threading.Lock()  # one SQLite connection, many retrieving threads
        self.masks: OrderedDict[str, np.ndarray] = OrderedDict()

    @classmethod
    def build(cls, ids: list[str], texts: list[str], metadata: list[dict[str, Any]], cfg: BM25Config,
              directory: Path) -> LexicalIndex:
        """Build in one batch (an index small enough to hold in memory) and open it."""
        builder = LexicalBuilder(directory, cfg)
        builder.add(ids, texts, metadata)
        builder.finish()
        return cls.load(directory)

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex:
        import bm25s

        if not (directory / CONFIG_FILE).is_file():
            raise InputError("this BM25 index was written by an older release (held in memory, not memory-mapped): "
                             "run `reasonloop reindex` to build the index again", path=directory)
        cfg = BM25Config.model_validate_json((directory / CONFIG_FILE).read_text(encoding="utf-8"))
        return cls(bm25s.BM25.load(str(directory), mmap=True, show_progress=False), directory, cfg)

    def chunk_ids(self, rows: list[int]) -> dict[int, str]:
        if not rows:
            return {}
        marks = ",".join("?" * len(rows))
        with self.guard:
            return dict(self.rows.execute(f"SELECT row, chunk_id FROM rows WHERE row IN ({marks})", rows).fetchall())

    def mask(self, filters: dict[str, Any]) -> np.ndarray:
        """1.0 for the rows whose metadata match every filter, else 0.0 (cached: a filter scans the rows once)."""
        key = json.dumps(filters, sort_keys=True)
        with self.guard:
            if key not in self.masks:
                mask = np.zeros(self.n_rows, dtype=np.float32)
                for row, metadata in self.rows.execute("SELECT row, metadata FROM rows"):
                    values = json.loads(metadata)
                    mask[row] = all(values.get(name) == value for name, value in filters.items())
                self.masks[key] = mask
                while len(self.masks) > MASKS_KEPT:
                    self.masks.popitem(last=False)
            self.masks.move_to_end(key)
            return self.masks[key]

    def search(self, queries: list[str], k: int,
               filters: dict[str, Any] | None = None) -> list[list[tuple[str, float]]]:
        """Top-k (chunk id, BM25 score) per query, best first; rows not matching `filters` never rank."""
        import bm25s

        if not queries or not self.n_rows:
            return [[] for _ in queries]
        mask = self.mask(filters) if filters else None
        if mask is not None and not mask.any():
            return [[] for _ in queries]
        tokens = bm25s.tokenize(queries, stopwords="en", stemmer=self.stemmer, show_progress=False)
        k = min(k, self.n_rows if mask is None else int(mask.sum()))
        rows, scores = self.bm25.retrieve(tokens, k=k, show_progress=False, weight_mask=mask, n_threads=1)
        ids = self.chunk_ids(sorted({int(r) for row, score in zip(rows, scores, strict=True)
                                     for r, s in zip(row, score, strict=True) if s > 0}))
        return [[(ids[int(r)], float(s)) for r, s in zip(row, score, strict=True) if s > 0]
                for row, score in zip(rows, scores, strict=True)]
