"""The nightly eval's HTML report: headline metrics with their intervals, the gate's decision, and three plots
(score distributions, accuracy per strategy and route, tokens vs correctness), one self-contained file that the
MLflow UI shows in the run's artifacts."""

from __future__ import annotations

import base64
import html
import io
from collections import defaultdict
from typing import Any

from reasonloop.evaluation.gate import GateReport
from reasonloop.schemas import EvalSummary, QuestionResult


def inline_figures(figures: dict[str, Any]) -> str:
    """Each figure as a heading and an inline PNG, so an HTML report is one self-contained file."""
    def png(figure: Any) -> str:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        return base64.b64encode(buffer.getvalue()).decode()

    return "".join(f'<h2>{html.escape(name.replace("_", " "))}</h2><img alt="{html.escape(name)}" '
                   f'src="data:image/png;base64,{png(fig)}">' for name, fig in figures.items())


def plots(results: list[QuestionResult]) -> dict[str, Any]:
    """name -> matplotlib figure (Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    judged = [r for r in results if r.verdict is not None and r.verdict.judge_error is None]
    figures = {}
    fig, axes = plt.subplots(1, 3, figsize=(12, 3))
    for axis, (title, values) in zip(axes, [
            ("judge correctness", [r.verdict.correctness for r in judged if r.verdict]),
            ("grounded fraction", [r.verdict.grounded_fraction for r in judged if r.verdict]),
            ("answer confidence", [r.answer.confidence for r in results if r.answer.error is None])], strict=True):
        axis.hist(values, bins=20, range=(0, 1), color="#4a78b0")
        axis.set_title(title)
    figures["score_distributions"] = fig
    groups: dict[str, list[float]] = defaultdict(list)
    for r in judged:
        groups[f"{r.answer.strategy}" + (f" / {r.answer.route}" if r.answer.route else "")].append(
            float(r.verdict.correct) if r.verdict else 0.0)
    fig, axis = plt.subplots(figsize=(6, 3))
    names = sorted(groups)
    axis.bar(names, [sum(groups[n]) / len(groups[n]) for n in names], color="#5aa469")
    axis.set_ylim(0, 1)
    axis.set_title("accuracy per strategy / route")
    axis.tick_params(axis="x", rotation=20)
    figures["accuracy_by_strategy"] = fig
    fig, axis = plt.subplots(figsize=(6, 3))
    axis.scatter([r.answer.tokens_in + r.answer.tokens_out for r in judged],
                 [r.verdict.correctness for r in judged if r.verdict], s=12, alpha=0.6)
    axis.set_xlabel("tokens (in + out)")
    axis.set_ylabel("judge correctness")
    axis.set_title("cost vs quality per question")
    figures["cost_vs_quality"] = fig
    return figures


def render_html(summary: EvalSummary, gate: GateReport, judge_version: str, figures: dict[str, Any]) -> str:
    """One self-contained page: metrics table, gate, judge version, the plots inline."""
    def cell(name: str, value: float | None) -> str:
        low, high = summary.intervals.get(name, (None, None))
        shown = "n/a" if value is None else f"{value:.3f}"
        return shown + (f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else "")

    rows = [("questions", f"{summary.n_questions} ({summary.n_failed} failed, {summary.n_judge_errors} judge errors)"),
            ("accuracy", cell("accuracy", summary.accuracy)),
            ("grounding rate", cell("grounding_rate", summary.grounding_rate)),
            ("hallucination rate", cell("hallucination_rate", summary.hallucination_rate)),
            ("answer relevance", cell("answer_relevance", summary.answer_relevance)),
            ("reasoning quality", cell("reasoning_quality", summary.reasoning_quality)),
            ("context recall@k", cell("recall_at_k", summary.recall_at_k)),
            ("context precision", cell("context_precision", summary.context_precision)),
            ("schema validity", cell("schema_validity", summary.schema_validity)),
            ("latency p50 (s)", cell("latency_p50_s", summary.latency_p50_s)),
            ("latency p95 (s)", cell("latency_p95_s", summary.latency_p95_s)),
            ("cost per query (USD)", cell("cost_per_query_usd", summary.cost_per_query_usd)),
            ("efficiency J", cell("efficiency_j", summary.efficiency_j) + f" (C in {summary.efficiency_cost_unit})"),
            ("judge", judge_version), ("regression gate", gate.summary())]
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return ("<!doctype html><html><head><meta charset='utf-8'><title>nightly eval</title><style>"
            "body{font-family:sans-serif;margin:2em}th{text-align:left;padding-right:2em}</style></head><body>"
            f"<h1>nightly eval</h1><table>{table}</table>{inline_figures(figures)}</body></html>")


def close_figures(figures: dict[str, Any]) -> None:
    """Free the figures (matplotlib keeps every open one in memory)."""
    import matplotlib.pyplot as plt

    for figure in figures.values():
        plt.close(figure)
