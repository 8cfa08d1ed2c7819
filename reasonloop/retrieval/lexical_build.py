"""Building the BM25 index a batch of chunks at a time, in bm25s' saved format, so a million chunks never sit in
memory together.

`add` tokenizes each batch with bm25s' own tokenizer (the one queries go through), maps its tokens onto one growing
vocabulary, appends the token ids to a spill file and counts document frequencies and lengths; the rows' chunk ids
and metadata go to `rows.sqlite`. `finish` knows the idf and the average length, scores the spilled documents a
slice at a time and writes each score at its token's column cursor in the CSC arrays, memory-mapped `.npy` files
that `LexicalIndex.load` maps back. Memory: the vocabulary, a few arrays of its size, and one slice.
The scores are bm25s' formulas (Kamphuis et al., ECIR 2020, as bm25s implements them); a test holds them equal to
bm25s' in-memory index.
"""

from __future__ import annotations

import io
import json
import math
import os
import sqlite3
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from reasonloop.retrieval.config import BM25Config

ROWS_FILE = "rows.sqlite"
CONFIG_FILE = "bm25_config.json"
SPILL_FILE = "tokens.spill"
SLICE_TOKENS = 1_000_000  # tokens scored at once in `finish` (~40 MB of temporary arrays)
DELTA = 0.5  # bm25s' default delta of BM25L and BM25+

IDF: dict[str, Callable[[float, int], float]] = {
    "robertson": lambda df, n: math.log(max(1.0, (n - df + 0.5) / (df + 0.5))),
    "lucene": lambda df, n: math.log(1 + (n - df + 0.5) / (df + 0.5)),
    "atire": lambda df, n: math.log(n / df),
    "bm25l": lambda df, n: math.log((n + 1) / (df + 0.5)),
    "bm25+": lambda df, n: math.log((n + 1) / df),
}


def term_component(method: str, tf: Any, length: Any, average: float, k1: float, b: float) -> Any:
    """bm25s' term-frequency component of each variant (arrays or scalars)."""
    norm = 1 - b + b * length / average
    if method in ("robertson", "lucene"):
        return tf / (k1 * norm + tf)
    if method == "atire":
        return tf * (k1 + 1) / (tf + k1 * norm)
    if method == "bm25l":
        c = tf / norm
        return (k1 + 1) * (c + DELTA) / (k1 + c + DELTA)
    return (k1 + 1) * tf / (k1 * norm + tf) + DELTA  # bm25+


def stemmer_of(cfg: BM25Config) -> Any:
    if cfg.stemmer == "none":
        return None
    import Stemmer

    return Stemmer.Stemmer(cfg.stemmer)


def open_rows(directory: Path, *, write: bool = False) -> sqlite3.Connection:
    """The row -> (chunk id, metadata) table of an index."""
    path = directory / ROWS_FILE
    if write:
        db = sqlite3.connect(path, check_same_thread=False)
        db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; "
                         "CREATE TABLE rows (row INTEGER PRIMARY KEY, chunk_id TEXT NOT NULL, metadata TEXT NOT NULL);")
        return db
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)


class LexicalBuilder:
    """Accumulates chunks with `add`, writes the index into `directory` with `finish`."""

    def __init__(self, directory: Path, cfg: BM25Config) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory, self.cfg = directory, cfg
        self.stemmer = stemmer_of(cfg)
        self.vocab: dict[str, int] = {}
        self.doc_freq = np.zeros(1024, dtype=np.int64)
        self.lengths = array("i")
        self.rows = open_rows(directory, write=True)
        self.spill = (directory / SPILL_FILE).open("wb")

    def add(self, ids: list[str], texts: list[str], metadata: list[dict[str, Any]]) -> None:
        import bm25s

        if not ids:
            return
        tokenized = bm25s.tokenize(texts, stopwords="en", stemmer=self.stemmer, show_progress=False)
        local = np.empty(max(tokenized.vocab.values(), default=-1) + 1, dtype=np.int32)
        for token, local_id in tokenized.vocab.items():
            local[local_id] = self.vocab.setdefault(token, len(self.vocab))
        if len(self.vocab) > len(self.doc_freq):
            self.doc_freq = np.concatenate([self.doc_freq, np.zeros(len(self.vocab), dtype=np.int64)])
        for doc_ids in tokenized.ids:
            tokens = local[np.asarray(doc_ids, dtype=np.int64)] if len(doc_ids) else np.empty(0, dtype=np.int32)
            tokens.astype(np.int32).tofile(self.spill)
            self.lengths.append(len(tokens))
            self.doc_freq[np.unique(tokens)] += 1
        first = len(self.lengths) - len(ids)
        self.rows.executemany("INSERT INTO rows VALUES (?, ?, ?)",
                              [(first + i, cid, json.dumps(meta)) for i, (cid, meta) in enumerate(zip(ids, metadata,
                                                                                                          strict=True))])

    def finish(self) -> None:
        """Score every spilled document and write the bm25s files; the spill file is removed. The spill is read and
        the scores written with plain file I/O (no memory map), so the pages they pass through are not this
        process' memory."""
        self.spill.close()
        self.rows.commit()
        self.rows.close()
        n_docs, n_vocab = len(self.lengths), len(self.vocab)
        lengths = np.frombuffer(self.lengths, dtype=np.int32) if n_docs else np.zeros(0, dtype=np.int32)
        average = float(lengths.mean()) if n_docs else 1.0
        doc_freq = self.doc_freq[:n_vocab]
        idf_of = IDF[self.cfg.method]
        idf = np.array([idf_of(float(df), n_docs) if df else 0.0 for df in doc_freq], dtype=np.float32)
        indptr = np.zeros(n_vocab + 1, dtype=np.int64)
        np.cumsum(doc_freq, out=indptr[1:])
        absent = None
        if self.cfg.method in ("bm25l", "bm25+"):  # bm25s subtracts a token's score at tf=0
            absent = (idf * term_component(self.cfg.method, 0.0, average, average, self.cfg.k1, self.cfg.b)
                      ).astype(np.float32)
            np.save(self.directory / "nonoccurrence_array.index.npy", absent)
        cursor = indptr[:-1].copy()
        ends = np.cumsum(lengths, dtype=np.int64)
        spill = self.directory / SPILL_FILE
        with (_NpyColumn(self.directory / "data.csc.index.npy", np.float32, int(indptr[-1])) as data,
              _NpyColumn(self.directory / "indices.csc.index.npy", np.int32, int(indptr[-1])) as indices):
            first = 0
            while first < n_docs:
                start = int(ends[first - 1]) if first else 0
                last = min(n_docs, max(first + 1, int(np.searchsorted(ends, start + SLICE_TOKENS, side="right"))))
                tokens = np.fromfile(spill, dtype=np.int32, count=int(ends[last - 1]) - start, offset=start * 4)
                self._score_slice(tokens, first, lengths[first:last], idf, absent, average, cursor, data, indices)
                first = last
        spill.unlink()
        np.save(self.directory / "indptr.csc.index.npy", indptr.astype(np.int32 if indptr[-1] < 2**31 else np.int64))
        vocab = dict(self.vocab)
        vocab.setdefault("", len(vocab))  # bm25s' empty token: scores documents of queries with no known token
        (self.directory / "vocab.index.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        params = {"k1": self.cfg.k1, "b": self.cfg.b, "delta": DELTA, "method": self.cfg.method,
                  "idf_method": self.cfg.method, "dtype": "float32", "int_dtype": "int32", "num_docs": n_docs,
                  "backend": "numpy"}
        (self.directory / "params.index.json").write_text(json.dumps(params, indent=1), encoding="utf-8")
        (self.directory / CONFIG_FILE).write_text(self.cfg.model_dump_json(), encoding="utf-8")

    def _score_slice(self, tokens: np.ndarray, first: int, lengths: np.ndarray, idf: np.ndarray,
                     absent: np.ndarray | None, average: float, cursor: np.ndarray, data: _NpyColumn,
                     indices: _NpyColumn) -> None:
        """Score documents first..first+len(lengths) and write each token's run at its column's cursor (documents
        stay in ascending order within a column, as in a CSC matrix)."""
        docs = np.repeat(np.arange(first, first + len(lengths), dtype=np.int64), lengths)
        base = len(self.lengths) + 1
        pairs, tf = np.unique(tokens.astype(np.int64) * base + docs, return_counts=True)
        token, doc = pairs // base, pairs % base  # sorted by token, then document
        component = term_component(self.cfg.method, tf.astype(np.float32), lengths[doc - first], average,
                                   self.cfg.k1, self.cfg.b)
        scores = idf[token] * component
        if absent is not None:
            scores -= absent[token]
        scores, doc = scores.astype(np.float32), doc.astype(np.int32)
        bounds = np.r_[np.flatnonzero(np.r_[True, token[1:] != token[:-1]]), len(token)]
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            at = int(cursor[token[lo]])
            data.write(at, scores[lo:hi])
            indices.write(at, doc[lo:hi])
            cursor[token[lo]] += hi - lo


class _NpyColumn:
    """A `.npy` file of `length` items written in runs at given positions (pwrite), never mapped into memory."""

    def __init__(self, path: Path, dtype: Any, length: int) -> None:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                                      "shape": (length,)})
        self.offset, self.itemsize = len(header.getvalue()), np.dtype(dtype).itemsize
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.pwrite(self.fd, header.getvalue(), 0)
        os.ftruncate(self.fd, self.offset + length * self.itemsize)

    def write(self, position: int, values: np.ndarray) -> None:
        os.pwrite(self.fd, values.tobytes(), self.offset + position * self.itemsize)

    def __enter__(self) -> _NpyColumn:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)
