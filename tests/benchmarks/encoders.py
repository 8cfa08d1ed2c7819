"""The embedding backends side by side: encode throughput of torch (sentence-transformers, the configured workers),
torch-bf16, onnx and onnx-int8 over the same SQuAD paragraphs in interleaved rounds, their vectors' cosine to torch's,
and (from the retrieval benchmark run once per backend: `python -m tests.benchmarks.retrieval --backend B`) hybrid R@5
and MRR@10 on the test half against torch's. Writes the `encoders` section of bench-results.json and
bench-results-encoders.md."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from tests.benchmarks.retrieval import BACKENDS, section_of
from tests.benchmarks.run import ROOT, shared_squad, timed, write_results

TARGET_SPEEDUP, QUALITY_BOUND = 2.0, 0.005


def hybrid_test(results: dict[str, Any], backend: str) -> dict[str, float] | None:
    section = results.get(section_of(backend))
    if section is None:
        return None
    return next(m for name, m in section["test"].items() if name.startswith("hybrid as configured"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--paragraphs", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slices", type=int, default=5, help="backends take turns on each slice of the paragraphs")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args()

    from reasonloop.retrieval.config import EmbeddingConfig
    from reasonloop.retrieval.embeddings import load_embedder
    from reasonloop.retrieval.squad import load_squad, passage_records

    squad = shared_squad()
    if squad is None:
        print("SQuAD not found in the shared data folder: encoder benchmark skipped")  # noqa: T201
        return
    texts = [r["text"] for r in passage_records(load_squad(squad))][:args.paragraphs]
    with tempfile.TemporaryDirectory() as cache:
        embedders = {b: load_embedder(EmbeddingConfig(backend=b), cache_dir=Path(cache)) for b in BACKENDS}  # type: ignore[arg-type]
        for embedder in embedders.values():
            embedder.embed_uncached(texts[:32])  # warm up
        # Backends alternate every few seconds on slices with the same length mix, so load from other processes
        # hits them alike; a backend's time is the sum over slices of its best round on each.
        slices = [texts[i::args.slices] for i in range(args.slices)]
        best = {b: [float("inf")] * len(slices) for b in BACKENDS}
        for _ in range(args.rounds):
            for i, part in enumerate(slices):
                for backend, embedder in embedders.items():
                    best[backend][i] = min(best[backend][i], timed(lambda e=embedder, t=part: e.embed_uncached(t))[0])
        seconds = {b: sum(per_slice) for b, per_slice in best.items()}
        reference = embedders["torch"].embed_uncached(texts)
        cosine = {b: (e.embed_uncached(texts) * reference).sum(axis=1) for b, e in embedders.items()}
    out_path = args.out.with_suffix(".json")
    stored = json.loads(out_path.read_text(encoding="utf-8")) if out_path.is_file() else {}
    base = hybrid_test(stored, "torch")
    rows: dict[str, Any] = {}
    for backend in BACKENDS:
        quality = hybrid_test(stored, backend)
        deltas = ({k: quality[k] - base[k] for k in ("recall_at_5", "mrr_at_10")} if quality and base else None)
        rows[backend] = {"texts_per_s": len(texts) / seconds[backend], "speedup": seconds["torch"] / seconds[backend],
                         "cosine_min": float(cosine[backend].min()), "cosine_mean": float(cosine[backend].mean()),
                         "hybrid_test": quality, "delta_vs_torch": deltas,
                         "within_quality_bound": None if deltas is None else
                         all(abs(d) <= QUALITY_BOUND for d in deltas.values())}
    eligible = [b for b in BACKENDS if b == "torch" or rows[b]["within_quality_bound"]]
    fastest = max(eligible, key=lambda b: rows[b]["texts_per_s"])
    result = {"paragraphs": len(texts), "rounds": args.rounds, "slices": args.slices, "backends": rows,
              "fastest_within_bound": fastest, "target_met": rows[fastest]["speedup"] >= TARGET_SPEEDUP,
              "target": f">= {TARGET_SPEEDUP}x torch with R@5 and MRR@10 within {QUALITY_BOUND}"}
    lines = [f"# Embedding backends ({len(texts)} SQuAD paragraphs in {args.slices} slices, best of {args.rounds} "
             "interleaved rounds on each)", "",
             "| backend | paragraphs/s | x torch | cosine to torch min / mean | hybrid R@5 / MRR@10 "
             "(test half) | change vs torch |", "|---|---|---|---|---|---|"]
    for backend, row in rows.items():
        quality, deltas = row["hybrid_test"], row["delta_vs_torch"]
        lines.append(f"| {backend} | {row['texts_per_s']:.1f} | {row['speedup']:.2f} | {row['cosine_min']:.4f} / "
                     f"{row['cosine_mean']:.4f} | "
                     + (f"{quality['recall_at_5']:.4f} / {quality['mrr_at_10']:.4f}" if quality else "not run")
                     + " | " + (f"{deltas['recall_at_5']:+.4f} / {deltas['mrr_at_10']:+.4f}" if deltas else "-")
                     + " |")
    lines += ["", f"Fastest backend within the quality bound ({QUALITY_BOUND}): {fastest}. Target: "
              f"{result['target']}: {'met' if result['target_met'] else 'not met'}."]
    write_results(args.out, {"encoders": result}, lines, "encoders")


if __name__ == "__main__":
    main()
