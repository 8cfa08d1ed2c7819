"""Retrieval quality on SQuAD v1.1 dev (all 2,067 paragraphs as the corpus): dense through Chroma vs exact
brute force, BM25, hybrid; fusion and BM25 parameters tuned on a dev half of the questions, reported on the
other half. Writes the `retrieval` section of bench-results.json / bench-results-retrieval.md."""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from tests.benchmarks.run import ROOT, shared_squad, write_results


def split_of(question_id: str) -> str:
    return "dev" if int(hashlib.sha256(question_id.encode()).hexdigest(), 16) % 2 == 0 else "test"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--paragraphs", type=int, default=0, help="0: all")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args()

    from reasonloop.settings import BM25Config, apply_environment, load_settings

    squad_path = shared_squad()
    if squad_path is None:
        print("SQuAD not found in the shared data folder (REASONLOOP_SHARED_DATA): retrieval benchmark skipped")  # noqa: T201
        return
    work = Path(tempfile.mkdtemp(prefix="reasonloop-retrieval-"))
    from reasonloop.squad import load_squad, passage_records, questions_for

    squad = load_squad(squad_path)
    records = passage_records(squad)
    records = records[:args.paragraphs] if args.paragraphs else records
    (work / "corpus").mkdir()
    (work / "corpus" / "squad.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    questions = questions_for(squad, {r["id"] for r in records})
    settings = load_settings(state_dir=work / "state", corpus={"path": work / "corpus"},
                             quality={"datasets": {}}, chroma={"collection": "squad"})
    apply_environment(settings)

    from reasonloop.lexical import LexicalIndex
    from reasonloop.providers import build_embedder, open_serving_index
    from reasonloop.retrieval import rrf_fuse
    from tasks.chunk import chunk_documents
    from tasks.index import chunk_metadata, index_text, publish_index_version, stage_index_version
    from tasks.load import load_documents
    from tasks.retrieve import score_rankings

    embedder = build_embedder(settings)
    docs = load_documents.fn(settings.corpus.path, settings.corpus).documents
    chunks = chunk_documents.fn(docs, settings.chunking)
    began = time.perf_counter()
    publish_index_version.fn(stage_index_version.fn(docs, chunks, settings, embedder), settings)
    index_s = time.perf_counter() - began
    serving = open_serving_index(settings, embedder)
    depth = 50
    texts = [q.question for q in questions]
    q_vectors = embedder.embed(texts)

    # dense through Chroma vs exact brute force over the stored vectors
    chroma_hits = serving.collection.query(query_embeddings=q_vectors, n_results=depth, include=[])["ids"]
    stored = serving.collection.get(include=["embeddings", "metadatas"])
    doc_of = {cid: m["doc_id"] for cid, m in zip(stored["ids"], stored["metadatas"], strict=True)}
    matrix = np.asarray(stored["embeddings"], dtype=np.float32)
    exact = np.argsort(-(q_vectors @ matrix.T), axis=1)[:, :depth]
    exact_ids = [[stored["ids"][i] for i in row] for row in exact]
    sample = np.random.default_rng(0).choice(len(chunks), size=min(200, len(chunks)), replace=False)
    re_encoded = embedder.embed_uncached([index_text(chunks[i], True) for i in sample])
    by_id = dict(zip(stored["ids"], matrix, strict=True))
    embed_drift = float(np.max(np.abs(re_encoded - np.stack([by_id[chunks[i].id] for i in sample]))))

    def docs_of(rankings: list[list[str]]) -> list[list[str]]:
        return [[doc_of[c] for c in r] for r in rankings]

    def scored(rankings: list[list[str]], subset: str) -> dict[str, Any]:
        keep = [i for i, q in enumerate(questions) if split_of(q.id) == subset]
        report = score_rankings(subset, [questions[i] for i in keep], [docs_of(rankings)[i] for i in keep])
        return report.model_dump(exclude={"dataset"})

    ids = [c.id for c in chunks]
    metas = [chunk_metadata(c) for c in chunks]
    bm25_cache: dict[tuple[float, float, str], list[list[str]]] = {}

    def bm25_rank(k1: float, b: float, method: str) -> list[list[str]]:
        key = (k1, b, method)
        if key not in bm25_cache:
            lex = LexicalIndex.build(ids, [index_text(c, True) for c in chunks], metas,
                                     BM25Config(k1=k1, b=b, method=method))
            bm25_cache[key] = [[cid for cid, _ in hits] for hits in lex.search(texts, depth)]
        return bm25_cache[key]

    def hybrid(k1: float, b: float, method: str, weight: float, rrf_k: int) -> list[list[str]]:
        return [[cid for cid, _ in rrf_fuse([d, lex], [weight, 1.0], rrf_k)[:depth]]
                for d, lex in zip(chroma_hits, bm25_rank(k1, b, method), strict=True)]

    default = settings.retrieval
    grid = list(itertools.product([0.9, 1.2, 1.5], [0.5, 0.75, 0.9], ["lucene", "bm25+"], [0.5, 0.75, 1.0, 1.5],
                                  [10, 30, 60]))
    tuned = max(grid, key=lambda p: (scored(hybrid(*p), "dev")["mrr_at_10"], scored(hybrid(*p), "dev")["recall_at_5"]))
    results = {
        "dataset": f"SQuAD v1.1 dev: {len(records)} paragraphs ({len(chunks)} chunks), {len(questions)} questions "
                   f"(dev/test split by id hash: {sum(split_of(q.id) == 'dev' for q in questions)} dev)",
        "index_seconds": index_s,
        "dense_chroma_vs_exact": {"chroma": scored(chroma_hits, "test"), "exact": scored(exact_ids, "test"),
                                  "max_abs_embedding_difference_on_200_reencoded_chunks": embed_drift},
        "test": {
            "dense (Chroma)": scored(chroma_hits, "test"),
            f"bm25 (default k1={default.bm25.k1}, b={default.bm25.b})":
                scored(bm25_rank(default.bm25.k1, default.bm25.b, default.bm25.method), "test"),
            "hybrid (default)": scored(hybrid(default.bm25.k1, default.bm25.b, default.bm25.method,
                                              default.dense_weight / default.bm25_weight, default.rrf_k), "test"),
            "hybrid (tuned on dev)": scored(hybrid(*tuned), "test"),
        },
        "tuned": dict(zip(["k1", "b", "method", "dense_weight", "rrf_k"], tuned, strict=True)),
    }
    lines = [f"# Retrieval on {results['dataset']}", "",
             "| retriever (test half) | R@1 | R@5 | R@10 | MRR@10 | nDCG@10 |", "|---|---|---|---|---|---|"]
    for name, m in results["test"].items():
        lines.append(f"| {name} | {m['recall_at_1']:.3f} | {m['recall_at_5']:.3f} | {m['recall_at_10']:.3f} | "
                     f"{m['mrr_at_10']:.3f} | {m['ndcg_at_10']:.3f} |")
    c, e = results["dense_chroma_vs_exact"]["chroma"], results["dense_chroma_vs_exact"]["exact"]
    lines += ["", f"Dense through Chroma vs exact brute force: R@5 {c['recall_at_5']:.4f} vs {e['recall_at_5']:.4f}, "
              f"MRR@10 {c['mrr_at_10']:.4f} vs {e['mrr_at_10']:.4f}; stored vs re-encoded vectors differ by at most "
              f"{embed_drift:.2e}.", f"Tuned on dev: {results['tuned']}. Indexing took {index_s:.0f} s."]
    text = "\n".join(lines) + "\n"
    write_results(args.out, {"retrieval": results}, text, "retrieval")
    print(text)  # noqa: T201


if __name__ == "__main__":
    main()
