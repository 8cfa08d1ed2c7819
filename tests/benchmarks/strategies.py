"""Strategies and the optimization layer on real questions, offline: every strategy, context budgets and widened
retrieval over the same SQuAD slice, answered by the extractive reasoner and scored by the heuristic judge.
Reports accuracy, hallucination rate, model calls and tokens per question, and the efficiency
J = (Q - alpha * error rate) / C with C in thousands of tokens per query (the offline reasoner costs no dollars).

The extractive reasoner is deterministic, so self-consistency's samples agree and the verify loop's self-check
passes its verbatim quotes: these rows measure the strategies' cost and plumbing, not what an LLM gains from them.
Writes the `strategies` section of bench-results.json and bench-results-strategies.md."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tests.benchmarks.run import ROOT, eval_results, timed, write_dataset, write_results

VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("direct", {"reasoning": {"strategy": "direct"}}),
    ("chain_of_thought", {"reasoning": {"strategy": "chain_of_thought"}}),
    ("self_consistency (5 samples)", {"reasoning": {"strategy": "self_consistency"}}),
    ("verify", {"reasoning": {"strategy": "verify"}}),
    ("parallel_paths (2 + synthesis)", {"reasoning": {"strategy": "parallel_paths"}}),
    ("react (retriever as tool)", {"reasoning": {"strategy": "react"}}),
    ("adaptive (direct / CoT / self-consistency)", {"reasoning": {"strategy": "adaptive"}}),
    ("chain_of_thought, context budget 256", {"optimize": {"context_budget": {"chain_of_thought": 256}}}),
    ("chain_of_thought, context budget 128", {"optimize": {"context_budget": {"chain_of_thought": 128}}}),
    ("chain_of_thought, widen to 8 under cosine 0.5", {"optimize": {"widen_below": 0.5, "widen_k": 8}}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--paragraphs", type=int, default=300, help="SQuAD paragraphs to index")
    parser.add_argument("--questions", type=int, default=150)
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args()

    from flows.reindex import reindex
    from reasonloop.providers import build_embedder, open_serving_index
    from reasonloop.settings import apply_environment, load_settings

    work = Path(tempfile.mkdtemp(prefix="reasonloop-strategies-"))
    corpus_dir, questions, dataset = write_dataset(work, args.paragraphs, args.questions)
    base = {"state_dir": work / "state", "corpus": {"path": corpus_dir}, "questions": {"path": questions},
            "quality": {"datasets": {"squad_sample": {"questions": questions}}},
            "cache": {"enabled": False, "checkpoint": False}}
    settings = load_settings(**base)
    apply_environment(settings)
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    reindex(settings)
    embedder = build_embedder(settings)
    index = open_serving_index(settings, embedder)
    eval_results(settings, embedder, index)  # warm up: every context sentence embedded once (memoized)
    rows = []
    for name, override in VARIANTS:
        variant = load_settings(**base, **override)
        seconds, (results, summary) = timed(lambda variant=variant: eval_results(variant, embedder, index))
        n = summary.n_questions
        rows.append({"variant": name, "questions": n, "accuracy": summary.accuracy,
                     "hallucination_rate": summary.hallucination_rate, "error_rate": summary.error_rate,
                     "calls_per_question": sum(r.answer.n_calls for r in results) / n,
                     "tokens_per_question": (summary.tokens_in + summary.tokens_out) / n,
                     "efficiency_j": summary.efficiency_j, "seconds": seconds, "failed": summary.n_failed,
                     "tokens_saved_vs_complex": summary.tokens_saved_vs_complex})
    shutil.rmtree(work, ignore_errors=True)

    def fmt(value: float | None, pattern: str) -> str:
        return "n/a" if value is None else pattern.format(value)

    lines = [f"# Strategies and optimization, offline extractive reasoner ({dataset})", "",
             "| variant | accuracy | hallucination | calls/q | tokens/q | J (per 1k tokens) | s |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {fmt(r['accuracy'], '{:.3f}')} | {fmt(r['hallucination_rate'], '{:.3f}')} | "
              f"{r['calls_per_question']:.1f} | {r['tokens_per_question']:.0f} | {fmt(r['efficiency_j'], '{:.3f}')} | "
              f"{r['seconds']:.1f} |" for r in rows]
    adaptive = next(r for r in rows if r["variant"].startswith("adaptive"))
    lines += ["", f"adaptive routing saved {adaptive['tokens_saved_vs_complex']} tokens against always-COMPLEX."]
    write_results(args.out, {"strategies": {"dataset": dataset, "rows": rows}}, lines, "strategies")


if __name__ == "__main__":
    main()
