"""The nightly evals' vitals over time: an HTML dashboard of the last N runs (trend plots) and the newest run's
vitals in Prometheus' text format (for a scrape endpoint or node_exporter's textfile collector).

Everything here reads what the nightly eval (and the drift flow after it) logged to MLflow; nothing is measured
again.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reasonloop.monitoring.report import close_figures, inline_figures

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Vital:
    metric: str  # the nightly eval's MLflow metric
    label: str
    help: str
    higher_is_better: bool


VITALS = (
    Vital("accuracy", "accuracy", "Share of questions the judge scored correct.", True),
    Vital("grounding_rate", "grounding rate", "Mean share of answer sentences supported by the context.", True),
    Vital("hallucination_rate", "hallucination rate", "Share of answers with an unsupported claim.", False),
    Vital("latency_p50_s", "latency p50 (s)", "Median answer latency in seconds.", False),
    Vital("latency_p95_s", "latency p95 (s)", "95th percentile answer latency in seconds.", False),
    Vital("context_chars_mean", "context length (chars)", "Mean characters of context an answer rested on.", False),
    Vital("cost_per_query_usd", "cost per query (USD)", "Model cost per question in US dollars.", False),
    Vital("n_failed", "failed questions", "Questions without an answer.", False),
    Vital("drift", "drift", "1 when the drift flow found drift against the reference, else 0.", False),
    Vital("drift.n_signals", "drift signals fired", "How many drift signals fired.", False),
)


def _value(row: Any, metric: str) -> float | None:
    value = row.get(f"metrics.{metric}")
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def trend_plots(frame: pd.DataFrame) -> dict[str, Any]:
    """One line per vital over the runs, oldest first (runs that lack a vital leave a gap)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = frame.sort_values("start_time")
    figures = {}
    for vital in VITALS:
        column = f"metrics.{vital.metric}"
        if column not in ordered or ordered[column].isna().all():
            continue
        fig, axis = plt.subplots(figsize=(7, 2.4))
        axis.plot(ordered["start_time"], ordered[column], marker="o", color="#4a78b0")
        axis.set_title(f"{vital.label} ({'higher' if vital.higher_is_better else 'lower'} is better)")
        axis.tick_params(axis="x", rotation=20, labelsize=8)
        figures[vital.metric.replace(".", "_")] = fig
    return figures


def render_dashboard(frame: pd.DataFrame, run_url: Any, title: str) -> str:
    """One self-contained page: the last runs' vitals as a table (newest first, each linked to MLflow) and a trend
    plot per vital. `run_url(experiment_id, run_id)` makes the links."""
    if frame.empty:
        return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>" \
               f"<h1>{html.escape(title)}</h1><p>No finished nightly eval yet: run <code>reasonloop eval</code>.</p>" \
               "</body></html>"
    head = "".join(f"<th>{html.escape(v.label)}</th>" for v in VITALS)
    rows = []
    for _, row in frame.sort_values("start_time", ascending=False).iterrows():
        cells = "".join(f"<td>{'' if (x := _value(row, v.metric)) is None else f'{x:.4g}'}</td>" for v in VITALS)
        link = html.escape(run_url(row["experiment_id"], row["run_id"]))
        rows.append(f"<tr><td>{row['start_time']:%Y-%m-%d %H:%M}</td><td><a href='{link}'>{row['run_id'][:12]}"
                    f"</a></td>{cells}</tr>")
    figures = trend_plots(frame)
    try:
        plots = inline_figures(figures)
    finally:
        close_figures(figures)
    style = "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;" \
            "padding:3px 8px;font-size:13px}"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}"
            f"</style></head><body><h1>{html.escape(title)}</h1><p>{len(frame)} nightly eval run(s), newest first."
            f"</p><table><tr><th>started</th><th>run</th>{head}</tr>{''.join(rows)}</table>{plots}</body></html>")


def prometheus_text(frame: pd.DataFrame, experiment: str) -> str:
    """The newest run's vitals as Prometheus gauges `reasonloop_<metric>{experiment=...}`, plus the run's start
    time; vitals the run did not log are left out (never reported as 0)."""
    lines: list[str] = []
    if frame.empty:
        return ""
    newest = frame.sort_values("start_time").iloc[-1]
    label = f'{{experiment="{experiment}",run_id="{newest["run_id"]}"}}'
    gauges = [(f"reasonloop_{v.metric.replace('.', '_')}", v.help, _value(newest, v.metric)) for v in VITALS]
    gauges.append(("reasonloop_last_run_timestamp_seconds", "Start of the newest finished nightly eval (Unix time).",
                   newest["start_time"].timestamp()))
    for name, help_text, value in gauges:
        if value is not None:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name}{label} {value!r}"]
    return "\n".join(lines) + "\n"
