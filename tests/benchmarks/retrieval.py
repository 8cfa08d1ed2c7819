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
from typing import Any, get_args

import numpy as np

from reasonloop.retrieval.config import EmbeddingConfig
from tests.benchmarks.run import ROOT, shared_squad, write_results
from tests.support.indexing import build_index

TARGET_R5, TARGET_MRR = 0.95, 0.85
BACKENDS: tuple[str, ...] = get_args(EmbeddingConfig.model_fields["backend"].annotation)


def section_of(backend: str) -> str:
    """The results section of a backend's run: torch's is the plain `retrieval` the other benchmarks read."""
    return "retrieval" if backend == "torch" else f"retrieval_{backend}"


def split_of(question_id: str) -> str:
    return "dev" if int(hashlib.sha256(question_id.encode()).hexdigest(), 16) % 2 == 0 else "test"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--paragraphs", type=int, default=0, help="0: all")
    parser.add_argument("--work", type=Path, help="state folder to reuse between runs (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    parser.add_argument("--backend", choices=BACKENDS, default="torch",
                        help="embedding.backend (sections other than torch's are named retrieval_<backend>)")
    args = parser.parse_args()

    from reasonloop.evaluation.config import QualityConfig
    from reasonloop.retrieval.config import BM25Config
    from reasonloop.settings import apply_environment, load_settings

    squad_path = shared_squad()
    if squad_path is None:
        print("SQuAD not found in the shared data folder (REASONLOOP_SHARED_DATA): retrieval benchmark skipped")  # noqa: T201
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="reasonloop-retrieval-"))
    from reasonloop.retrieval.squad import load_squad, passage_records, questions_for

    squad = load_squad(squad_path)
    records = passage_records(squad)
    records = records[:args.paragraphs] if args.paragraphs else records
    (work / "corpus").mkdir(parents=True, exist_ok=True)
    (work / "corpus" / "squad.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    questions = questions_for(squad, {r["id"] for r in records})
    settings = load_settings(state_dir=work / "state", corpus={"path": work / "corpus"},
                             embedding={"backend": args.backend},
                             chroma={"collection": "squad"}).model_copy(update={"quality": QualityConfig()})
    apply_environment(settings)

    from reasonloop.evaluation.retrieval_quality import score_rankings
    from reasonloop.providers import build_embedder, open_serving_index
    from reasonloop.retrieval.chunking import chunk_documents
    from reasonloop.retrieval.corpus_scan import load_documents
    from reasonloop.retrieval.index_build import chunk_metadata, index_text
    from reasonloop.retrieval.lexical import LexicalIndex
    from reasonloop.retrieval.retriever import fuse

    embedder = build_embedder(settings)
    docs = load_documents(settings.corpus.path, settings.corpus).documents
    chunks = chunk_documents(docs, settings.chunking, embedder.count_tokens)
    began = time.perf_counter()
    build = build_index(settings)
    index_s = time.perf_counter() - began
    serving = open_serving_index(settings, embedder)
    depth = settings.retrieval.candidates
    texts = [q.question for q in questions]
    q_vectors = embedder.embed(texts)

    # dense through Chroma vs exact brute force over the stored vectors
    found = serving.collection.query(query_embeddings=q_vectors, n_results=depth, include=["distances"])
    dense_hits = [[(cid, 1.0 - d) for cid, d in zip(ids, dists, strict=True)]
                  for ids, dists in zip(found["ids"], found["distances"], strict=True)]
    stored = serving.collection.get(include=["embeddings", "metadatas"])
    doc_of = {cid: m["doc_id"] for cid, m in zip(stored["ids"], stored["metadatas"], strict=True)}
    matrix = np.asarray(stored["embeddings"], dtype=np.float32)
    exact = np.argsort(-(q_vectors @ matrix.T), axis=1)[:, :depth]
    exact_ids = [[stored["ids"][i] for i in row] for row in exact]
    sample = np.random.default_rng(0).choice(len(chunks), size=min(200, len(chunks)), replace=False)
    re_encoded = embedder.embed_uncached([index_text(chunks[i], settings.chunking.title_prefix) for i in sample])
    by_id = dict(zip(stored["ids"], matrix, strict=True))
    embed_drift = float(np.max(np.abs(re_encoded - np.stack([by_id[chunks[i].id] for i in sample]))))

    subsets = {name: [i for i, q in enumerate(questions) if split_of(q.id) == name] for name in ("dev", "test")}

    def scored(rankings: list[list[str]], subset: str) -> dict[str, Any]:
        keep = subsets[subset]
        report = score_rankings(subset, [questions[i] for i in keep], [[doc_of[c] for c in rankings[i]] for i in keep])
        return report.model_dump(exclude={"dataset"})

    def ids_of(hits: list[list[tuple[str, float]]]) -> list[list[str]]:
        return [[cid for cid, _ in h] for h in hits]

    ids = [c.id for c in chunks]
    metas = [chunk_metadata(c) for c in chunks]
    lexical_texts = [index_text(c, settings.chunking.title_prefix) for c in chunks]

    def bm25_hits(cfg: BM25Config) -> list[list[tuple[str, float]]]:
        return LexicalIndex.build(ids, lexical_texts, metas, cfg, Path(tempfile.mkdtemp(dir=work))).search(texts,
                                                                                                           depth)

    def hybrid(lexical: list[list[tuple[str, float]]], **update: Any) -> list[list[str]]:
        cfg = settings.retrieval.model_copy(update=update)
        return [[cid for cid, _ in fuse(d, lx, cfg, depth)] for d, lx in zip(dense_hits, lexical, strict=True)]

    def dev_key(rankings: list[list[str]]) -> tuple[float, float]:
        m = scored(rankings, "dev")
        return m["mrr_at_10"], m["recall_at_5"]

    # tuned on the dev half in two stages (BM25 alone, then the fusion), reported on the test half
    default = settings.retrieval
    bm25_grid = [default.bm25.model_copy(update={"k1": k1, "b": b})
                 for k1, b in itertools.product([0.9, 1.2, 1.5], [0.4, 0.75, 0.9])]
    bm25_runs = {cfg.model_dump_json(): bm25_hits(cfg) for cfg in bm25_grid}
    best_bm25 = max(bm25_runs, key=lambda key: dev_key(ids_of(bm25_runs[key])))
    lexical = bm25_runs[best_bm25]
    fusion_grid = [{"fusion": "rrf", "rrf_k": k, "dense_weight": w} for k in (10, 60) for w in (0.5, 1.0, 1.5)] + \
                  [{"fusion": "zscore", "dense_weight": w} for w in (0.5, 0.7, 1.0, 1.5)]
    fusion_runs = [(update, hybrid(lexical, **update)) for update in fusion_grid]
    best_fusion, tuned = max(fusion_runs, key=lambda run: dev_key(run[1]))
    default_lexical = bm25_runs.get(default.bm25.model_dump_json()) or bm25_hits(default.bm25)
    rrf_default = {"fusion": "rrf", "rrf_k": 60, "dense_weight": 1.0, "bm25_weight": 1.0}
    test = {
        "dense (Chroma)": scored(ids_of(dense_hits), "test"),
        f"bm25 (configured k1={default.bm25.k1}, b={default.bm25.b})": scored(ids_of(default_lexical), "test"),
        "hybrid rrf k=60, equal weights": scored(hybrid(default_lexical, **rrf_default), "test"),
        f"hybrid as configured ({default.fusion}, dense_weight={default.dense_weight})":
            scored(hybrid(default_lexical), "test"),
        "hybrid tuned on dev": scored(tuned, "test"),
    }
    results = {
        "dataset": f"SQuAD v1.1 dev: {len(records)} paragraphs ({len(chunks)} chunks), {len(questions)} questions "
                   f"(dev/test split by id hash: {len(subsets['dev'])} dev)",
        "index_seconds": index_s, "index_version": build.manifest.version,
        "dense_chroma_vs_exact": {"chroma": scored(ids_of(dense_hits), "test"), "exact": scored(exact_ids, "test"),
                                  "max_abs_embedding_difference_on_200_reencoded_chunks": embed_drift},
        "test": test,
        "tuned": {"bm25": json.loads(best_bm25), **best_fusion},
    }
    configured = next(m for name, m in test.items() if name.startswith("hybrid as configured"))
    results["target"] = {"recall_at_5": TARGET_R5, "mrr_at_10": TARGET_MRR,
                         "passed": configured["recall_at_5"] >= TARGET_R5 and configured["mrr_at_10"] >= TARGET_MRR}
    lines = [f"# Retrieval on {results['dataset']}", "",
             "| retriever (test half) | R@1 | R@5 | R@10 | MRR@10 | nDCG@10 |", "|---|---|---|---|---|---|"]
    for name, m in test.items():
        lines.append(f"| {name} | {m['recall_at_1']:.3f} | {m['recall_at_5']:.3f} | {m['recall_at_10']:.3f} | "
                     f"{m['mrr_at_10']:.3f} | {m['ndcg_at_10']:.3f} |")
    c, e = results["dense_chroma_vs_exact"]["chroma"], results["dense_chroma_vs_exact"]["exact"]
    lines += ["", f"Dense through Chroma vs exact brute force: R@5 {c['recall_at_5']:.4f} vs {e['recall_at_5']:.4f}, "
              f"MRR@10 {c['mrr_at_10']:.4f} vs {e['mrr_at_10']:.4f}; stored vs re-encoded vectors differ by at most "
              f"{embed_drift:.2e}.", f"Tuned on dev: {results['tuned']}. Indexing took {index_s:.0f} s"
              f"{'' if build.built else ' (reused state: nothing to embed)'}.",
              f"Target for the configured hybrid: R@5 >= {TARGET_R5} and MRR@10 >= {TARGET_MRR}: "
              f"{results['target']['passed']}."]
    section = section_of(args.backend)
    results["backend"], results["index_s"] = args.backend, index_s
    write_results(args.out, {section: results}, lines, section.replace("_", "-"))


if __name__ == "__main__":
    main()
