"""Peak memory of a reindex as the corpus grows: the reindex flow runs in a fresh child process per size and
reports its own peak RSS. Encoding and upserts stream in windows (vectors are never held for the whole corpus),
so peak RSS should grow with the corpus' text, not with its vectors. Short documents (one SQuAD question each, or
the sample's questions when the shared data is absent) keep 50k chunks within minutes on 2 cores.

Writes the `memory` section of bench-results.json and bench-results-memory.md."""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.benchmarks.run import ROOT, shared_squad, write_results

BOUND = 2.5  # the reindex's working set (peak RSS - RSS with the model loaded) at 5x the chunks: sub-linear


def short_texts() -> tuple[list[str], str]:
    """Distinct short texts to cycle through: SQuAD dev questions, else the sample question set."""
    squad = shared_squad()
    if squad is not None:
        data = json.loads(squad.read_text(encoding="utf-8"))
        return [qa["question"] for a in data["data"] for p in a["paragraphs"] for qa in p["qas"]], "SQuAD questions"
    rows = (ROOT / "data" / "questions" / "squad_sample.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(r)["question"] for r in rows if r.strip()], "the sample's questions (shared SQuAD absent)"


def write_corpus(directory: Path, n: int, texts: list[str]) -> None:
    directory.mkdir(parents=True)
    with (directory / "docs.jsonl").open("w", encoding="utf-8") as out:
        for i in range(n):
            out.write(json.dumps({"id": f"d{i}", "title": f"batch {i // len(texts)}", "text": texts[i % len(texts)]})
                      + "\n")


def child(state: Path, corpus: Path) -> None:
    """Run the reindex flow and print its outcome and this process's peak RSS as JSON."""
    from reasonloop.evaluation.config import QualityConfig
    from reasonloop.settings import apply_environment, load_settings

    settings = load_settings(state_dir=state, corpus={"path": corpus}).model_copy(update={"quality": QualityConfig()})
    apply_environment(settings)
    from flows.reindex import reindex
    from reasonloop.providers import build_embedder

    build_embedder(settings)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    began = time.perf_counter()
    report = reindex(settings)
    print(json.dumps({"chunks": report.metrics["n_chunks"], "seconds": time.perf_counter() - began,  # noqa: T201
                      "rss_before_mb": baseline,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure(n: int, texts: list[str], work: Path) -> dict[str, Any]:
    corpus = work / f"corpus-{n}"
    write_corpus(corpus, n, texts)
    done = subprocess.run([sys.executable, "-m", "tests.benchmarks.memory", "--child", str(work / f"state-{n}"),
                           str(corpus)], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if len(set(args.sizes)) < 2:
        parser.error("--sizes needs two or more sizes to compare")
    texts, source = short_texts()
    with tempfile.TemporaryDirectory(prefix="reasonloop-memory-") as tmp:
        runs = {str(n): measure(n, texts, Path(tmp)) for n in sorted(args.sizes)}
    for run in runs.values():
        run["working_set_mb"] = run["peak_rss_mb"] - run["rss_before_mb"]
    small, large = runs[str(min(args.sizes))], runs[str(max(args.sizes))]
    ratio = large["working_set_mb"] / small["working_set_mb"]
    growth = (large["peak_rss_mb"] - small["peak_rss_mb"]) / (large["chunks"] - small["chunks"]) * 10_000
    result = {"documents": source, "runs": runs, "working_set_ratio": ratio, "mb_per_10k_chunks": growth,
              "target": f"working set at {max(args.sizes)} chunks / at {min(args.sizes)} <= {BOUND}",
              "passed": ratio <= BOUND}
    lines = [f"# Reindex peak memory (one short document per chunk: {source})", "",
             "| chunks | wall s | chunks/s | RSS with the model loaded MB | peak RSS MB | working set MB |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['chunks']:,.0f} | {r['seconds']:.0f} | {r['chunks'] / r['seconds']:.0f} | "
              f"{r['rss_before_mb']:.0f} | {r['peak_rss_mb']:.0f} | {r['working_set_mb']:.0f} |" for r in runs.values()]
    lines += ["", f"Working-set ratio {ratio:.2f} (target: {result['target']}: {result['passed']}); peak RSS grows "
              f"{growth:.0f} MB per 10k more chunks."]
    write_results(args.out, {"memory": result}, lines, "memory")


if __name__ == "__main__":
    main()
