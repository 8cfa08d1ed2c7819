"""The reindex at scale: peak memory from 100k to 1M chunks, and an unchanged reindex against a full one.

A synthetic corpus and a cheap deterministic embedder stand in for real text and all-MiniLM-L6-v2 (whose ~9
paragraphs/s on 2 cores would take more than a day for 1M chunks): this measures the reindex's own memory and work,
not the encoder's. The corpus: JSONL files of about 2 MB, each document three ~150-character chunks of words drawn
from a fixed 50,000-word vocabulary by Zipf's law (seeded). The embedder: a 64-dimension hashed bag of words.
Chroma runs as a server (`chroma run`, the scale-out mode) so the vector index is its process' memory, reported
beside the reindex's. Every reindex runs the flow in a fresh child process that reports its own peak RSS; a
warm-up flow starts Prefect's temporary API before the clock starts.

Targets (issue 19): peak RSS at 1M chunks <= 1.3x at 100k; an unchanged reindex of 1M chunks <= 5% of the full one.
Writes the `memory` section of bench-results.json and bench-results-memory.md."""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from reasonloop.retrieval.embeddings import Embedder
from tests.benchmarks.run import ROOT, write_results
from tests.support.servers import chroma_server

RSS_BOUND, NOOP_BOUND = 1.3, 0.05
CHUNK_CHARS, CHUNKS_PER_DOC, FILE_BYTES, DIMENSION, VOCABULARY = 160, 3, 2_000_000, 64, 50_000


def write_corpus(directory: Path, chunks: int, seed: int = 0) -> int:
    """JSONL files of about FILE_BYTES; returns the number of documents."""
    rng = np.random.default_rng(seed)
    vocabulary = [f"{hashlib.md5(str(i).encode()).hexdigest()[:rng.integers(3, 9)]}" for i in range(VOCABULARY)]
    weights = 1.0 / np.arange(1, VOCABULARY + 1)  # Zipf's law over a finite vocabulary
    ranks = rng.choice(VOCABULARY, size=chunks * 40, p=weights / weights.sum())
    directory.mkdir(parents=True)
    n_docs, cursor, file_no, out, size = chunks // CHUNKS_PER_DOC, 0, 0, None, FILE_BYTES
    for doc in range(n_docs):
        if size >= FILE_BYTES:
            if out:
                out.close()
            out, size, file_no = (directory / f"part{file_no:05d}.jsonl").open("w", encoding="utf-8"), 0, file_no + 1
        sentences = []
        for _ in range(CHUNKS_PER_DOC):
            words: list[str] = []
            while sum(len(w) + 1 for w in words) < CHUNK_CHARS - 12:
                words.append(vocabulary[ranks[cursor % len(ranks)]])
                cursor += 1
            sentences.append(" ".join(words).capitalize() + ".")
        line = json.dumps({"id": f"doc{doc}", "title": f"topic {doc % 997}", "text": "\n\n".join(sentences)}) + "\n"
        out.write(line)  # type: ignore[union-attr]
        size += len(line)
    if out:
        out.close()
    return n_docs


class HashingEmbedder(Embedder):
    """A cheap deterministic stand-in for the encoder: a signed hashed bag of words, unit length."""

    def __init__(self) -> None:
        super().__init__(None, "hashing-64", "synthetic", batch_size=512, backend="numpy")  # type: ignore[arg-type]

    @property
    def dimension(self) -> int:
        return DIMENSION

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                digest = zlib.crc32(word.encode())
                out[row, digest % DIMENSION] += 1.0 if digest & 1024 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)

    def embed_uncached(self, texts: list[str]) -> np.ndarray:
        return self.embed(texts)

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def child(state: Path, corpus: Path, port: int) -> None:
    """Run the reindex flow once and print its outcome, wall time and this process' peak RSS as JSON."""
    from reasonloop.evaluation.config import QualityConfig
    from reasonloop.settings import apply_environment, load_settings

    settings = load_settings(state_dir=state, corpus={"path": corpus},
                             chunking={"unit": "chars", "chunk_size": CHUNK_CHARS + 20, "chunk_overlap": 0,
                                       "title_prefix": False},  # a chunk's own text finds it (the sample checks)
                             chroma={"mode": "http", "host": "127.0.0.1", "port": port},
                             ).model_copy(update={"quality": QualityConfig()})
    apply_environment(settings)  # before Prefect is imported: it reads its settings once
    from prefect import flow

    import flows.reindex as reindex_flow

    reindex_flow.build_embedder = lambda _settings: HashingEmbedder()  # type: ignore[assignment,return-value]

    @flow(name="warm-up")
    def warm_up() -> None:
        """Start Prefect's temporary API before the clock starts."""

    warm_up()
    baseline = peak_rss_mb()
    began = time.perf_counter()
    report = reindex_flow.reindex(settings)
    print(json.dumps({"seconds": time.perf_counter() - began, "rss_before_mb": baseline,  # noqa: T201
                      "peak_rss_mb": peak_rss_mb(),
                      **{k: report.metrics[k] for k in ("n_chunks", "n_documents", "n_embedded", "n_copied",
                                                        "n_files_read", "n_files_skipped", "new_version")}}))


def peak_rss_mb(pid: int | str = "self") -> float:
    """A process' peak RSS (VmHWM: unlike ru_maxrss, not carried over from the parent across fork and exec)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024


def run_child(state: Path, corpus: Path, port: int) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "tests.benchmarks.memory", "--child", str(state), str(corpus),
                           str(port)], cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"reindex child failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def server_peak_mb(port: int) -> float:
    """Peak RSS of the Chroma server listening on `port` (its vector index lives there)."""
    import psutil

    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            return peak_rss_mb(conn.pid)
    return float("nan")


def measure(chunks: int, work: Path) -> dict[str, Any]:
    corpus = work / f"corpus-{chunks}"
    began = time.perf_counter()
    n_docs = write_corpus(corpus, chunks)
    files = sorted(corpus.iterdir())
    written = {"documents": n_docs, "files": len(files), "corpus_mb": sum(f.stat().st_size for f in files) / 1e6,
               "write_s": time.perf_counter() - began}
    with chroma_server(work / f"chroma-{chunks}", Path(sys.executable).parent) as port:
        full = run_child(work / f"state-{chunks}", corpus, port)
        unchanged = run_child(work / f"state-{chunks}", corpus, port)
        chroma_mb = server_peak_mb(port)
    return {**written, "full": full, "unchanged": unchanged, "chroma_server_peak_mb": chroma_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs=2, default=[100_000, 1_000_000], help="chunks: small, large")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]), int(args.child[2]))
        return
    small_n, large_n = sorted(args.sizes)
    with tempfile.TemporaryDirectory(prefix="reasonloop-memory-") as tmp:
        runs = {str(n): measure(n, Path(tmp)) for n in (small_n, large_n)}
    small, large = runs[str(small_n)], runs[str(large_n)]
    rss_ratio = large["full"]["peak_rss_mb"] / small["full"]["peak_rss_mb"]
    noop_ratio = large["unchanged"]["seconds"] / large["full"]["seconds"]
    result = {"corpus": "synthetic (Zipf words, 3 chunks per document); embedder: 64-dim hashed bag of words; "
                        "Chroma as a server", "runs": runs, "peak_rss_ratio": rss_ratio, "unchanged_ratio": noop_ratio,
              "targets": {"peak_rss_ratio": RSS_BOUND, "unchanged_ratio": NOOP_BOUND},
              "passed": {"peak_rss_ratio": rss_ratio <= RSS_BOUND, "unchanged_ratio": noop_ratio <= NOOP_BOUND}}
    lines = ["# Reindex at scale (synthetic corpus, hashing embedder, Chroma server)", "",
             "| chunks | documents | files | run | wall s | files read | chunks embedded | RSS before MB | "
             "peak RSS MB | Chroma server peak MB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for n, r in runs.items():
        for kind in ("full", "unchanged"):
            x = r[kind]
            lines.append(f"| {int(n):,} | {r['documents']:,} | {r['files']} | {kind} | {x['seconds']:.1f} | "
                         f"{x['n_files_read']:.0f} | {x['n_embedded']:,.0f} | {x['rss_before_mb']:.0f} | "
                         f"{x['peak_rss_mb']:.0f} | {r['chroma_server_peak_mb']:.0f} |")
    lines += ["", f"Peak RSS at {large_n:,} chunks / at {small_n:,}: {rss_ratio:.2f} (target <= {RSS_BOUND}: "
              f"{'met' if rss_ratio <= RSS_BOUND else 'NOT met'}). Unchanged reindex / full at {large_n:,}: "
              f"{noop_ratio:.3f} (target <= {NOOP_BOUND}: {'met' if noop_ratio <= NOOP_BOUND else 'NOT met'}).",
              "The corpus and the embedder are synthetic stand-ins (see the module docstring); the vector index "
              "lives in the Chroma server's memory, listed apart."]
    write_results(args.out, {"memory": result}, lines, "memory")


if __name__ == "__main__":
    main()
