"""What the drift flow shows people: per-signal MLflow metrics, summary rows, the alert payload, and one
self-contained HTML page with its plots (reference vs current for every 1-D signal, the category mixes, the
questions projected on two principal axes, and the nightly metric series with the CUSUM's change point marked).

Pure functions over signal results and plain arrays; the caller writes them to MLflow.
"""

from __future__ import annotations

import html
import math
import re
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from reasonloop.monitoring.drift_stats import SignalResult
from reasonloop.monitoring.report import inline_figures

_METRIC_KEY = re.compile(r"[^\w\-. :/]")  # what MLflow accepts in a metric name
REFERENCE, CURRENT = "#8c8c8c", "#c0392b"


def metric_key(name: str) -> str:
    return _METRIC_KEY.sub("_", name)


def signal_metrics(signals: list[SignalResult]) -> dict[str, float]:
    """`<signal>.statistic|p_value|threshold|drifted|insufficient_data|n_reference|n_current|<extra>` (a missing
    statistic or p-value is left out, never logged as 0), plus `drift` and `n_drifted` for the run."""
    metrics: dict[str, float] = {}
    for s in signals:
        values: dict[str, float | None] = {
            "statistic": s.statistic, "p_value": s.p_value, "threshold": s.threshold, "drifted": float(s.drifted),
            "insufficient_data": float(s.status == "insufficient_data"), "n_reference": float(s.n_reference),
            "n_current": float(s.n_current), **s.extra}
        metrics |= {metric_key(f"{s.signal}.{k}"): float(v) for k, v in values.items()
                    if v is not None and math.isfinite(v)}
    fired = [s for s in signals if s.drifted]
    return {**metrics, "drift": float(bool(fired)), "n_drifted": float(len(fired))}


def _verdict(s: SignalResult) -> str:
    label = {"drift": "DRIFT", "ok": "ok", "insufficient_data": "insufficient data"}[s.status]
    return f"{label}: {s.detail}"


def drift_rows(signals: list[SignalResult], current_run_id: str | None, reference: str) -> dict[str, str]:
    """Headline rows for the CLI and the Prefect summary: the verdict, the windows, one row per signal."""
    fired = [s.signal for s in signals if s.drifted]
    return {"drift": f"yes: {', '.join(fired)}" if fired else "no", "current run": current_run_id or "none",
            "reference": reference, **{s.signal: _verdict(s) for s in signals}}


def alert_payload(signals: list[SignalResult], *, drift_run_id: str, experiment: str, current_run_id: str | None,
                  reference_kind: str, reference_run_ids: list[str], run_url: str) -> dict[str, Any]:
    """What the Prefect event and the webhook carry: run ids, the fired signals and their evidence. Names and
    numbers only: nothing from the settings beyond the experiment's name and a redacted run URL."""
    return {"drift_run_id": drift_run_id, "experiment": experiment, "mlflow_run_url": run_url,
            "current_run_id": current_run_id, "reference_kind": reference_kind,
            "reference_run_ids": reference_run_ids, "fired": [s.signal for s in signals if s.drifted],
            "signals": [s.model_dump(include={"signal", "test", "statistic", "p_value", "threshold", "detail"})
                        for s in signals if s.drifted]}


# --- plots ---------------------------------------------------------------------------------------------------------

def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _title(signal: str, by_name: dict[str, SignalResult]) -> str:
    result = by_name.get(signal)
    return f"{signal} ({result.status.replace('_', ' ')})" if result else signal


def _distribution(plt: Any, title: str, reference: np.ndarray, current: np.ndarray) -> Any:
    """Histograms (as densities on shared bins) and ECDFs of the finite values of both windows."""
    ref, cur = (v[np.isfinite(v)] for v in (np.asarray(reference, float), np.asarray(current, float)))
    fig, (hist, ecdf) = plt.subplots(1, 2, figsize=(10, 3))
    pooled = np.concatenate([ref, cur])
    bins = np.histogram_bin_edges(pooled, bins=20) if pooled.size else 10
    for values, color, label in ((ref, REFERENCE, "reference"), (cur, CURRENT, "current")):
        if values.size:
            hist.hist(values, bins=bins, density=True, alpha=0.5, color=color, label=f"{label} (n={values.size})")
            ordered = np.sort(values)
            ecdf.step(ordered, np.arange(1, ordered.size + 1) / ordered.size, where="post", color=color, label=label)
    hist.set_title(f"{title}: histogram")
    ecdf.set_title("ECDF")
    for axis in (hist, ecdf):
        if pooled.size:
            axis.legend(fontsize=8)
    return fig


def _shares(values: Sequence[Hashable | None]) -> dict[str, float]:
    counts = Counter(str(v) for v in values if v is not None)
    total = sum(counts.values())
    return {k: n / total for k, n in counts.items()} if total else {}


def _categories(plt: Any, categorical: dict[str, tuple[Sequence[Hashable | None], Sequence[Hashable | None]]],
                by_name: dict[str, SignalResult]) -> Any:
    fig, axes = plt.subplots(1, len(categorical), figsize=(4 * len(categorical), 3), squeeze=False)
    for axis, (signal, (reference, current)) in zip(axes[0], categorical.items(), strict=True):
        ref, cur = _shares(reference), _shares(current)
        names = sorted(ref.keys() | cur.keys())
        x = np.arange(len(names))
        axis.bar(x - 0.2, [ref.get(n, 0.0) for n in names], 0.4, color=REFERENCE, label="reference")
        axis.bar(x + 0.2, [cur.get(n, 0.0) for n in names], 0.4, color=CURRENT, label="current")
        crowded = len(names) > 3
        axis.set_xticks(x, names, fontsize=8, rotation=30 if crowded else 0, ha="right" if crowded else "center")
        axis.set_ylim(0, 1.25)
        axis.set_ylabel("share of answers", fontsize=8)
        axis.set_title(_title(signal, by_name), fontsize=9)
        axis.legend(fontsize=7, ncol=2, loc="upper center")
    fig.tight_layout()
    return fig


def _projection(plt: Any, reference: np.ndarray, current: np.ndarray, title: str) -> Any:
    """Both windows' question embeddings on the pooled sample's first two principal axes."""
    pooled = np.vstack([reference, current])
    centered = pooled - pooled.mean(axis=0)
    axes_2d = np.linalg.svd(centered, full_matrices=False)[2][:2].T
    points = centered @ axes_2d
    fig, axis = plt.subplots(figsize=(5, 4))
    axis.scatter(*points[:len(reference)].T, s=14, alpha=0.6, color=REFERENCE, label=f"reference ({len(reference)})")
    axis.scatter(*points[len(reference):].T, s=14, alpha=0.6, color=CURRENT, label=f"current ({len(current)})")
    axis.set_title(f"{title}: questions, first two principal axes", fontsize=9)
    axis.legend(fontsize=8)
    return fig


def _series(plt: Any, series: dict[str, list[float]], n_reference: int, by_name: dict[str, SignalResult]) -> Any:
    """Each nightly metric, oldest run first: the reference runs shaded, the CUSUM's change point and alarm marked."""
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(len(series), 1, figsize=(8, 2.6 * len(series)), squeeze=False)
    for axis, (metric, values) in zip(axes[:, 0], series.items(), strict=True):
        signal = by_name.get(f"quality.{metric}")
        axis.plot(range(len(values)), values, marker="o", ms=3, color="#4a78b0", label=metric)
        if n_reference:
            axis.axvspan(-0.5, n_reference - 0.5, color=REFERENCE, alpha=0.15, label="reference runs")
        if signal is not None and "change_index" in signal.extra:
            axis.axvline(signal.extra["change_index"], color=CURRENT, ls="--", label="change point")
            axis.axvline(signal.extra["alarm_index"], color=CURRENT, label="alarm")
        axis.set_title(_title(f"quality.{metric}", by_name), fontsize=9)
        axis.set_xlabel("nightly-eval run (oldest first)")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def drift_plots(signals: list[SignalResult], *, numeric: dict[str, tuple[np.ndarray, np.ndarray]],
                categorical: dict[str, tuple[Sequence[Hashable | None], Sequence[Hashable | None]]],
                questions: tuple[np.ndarray, np.ndarray], series: dict[str, list[float]],
                n_reference: int) -> dict[str, Any]:
    """name -> matplotlib figure; a plot whose windows are both empty is left out."""
    plt = _pyplot()
    by_name = {s.signal: s for s in signals}
    figures = {signal.replace(".", "_"): _distribution(plt, _title(signal, by_name), *windows)
               for signal, windows in numeric.items() if any(np.isfinite(np.asarray(w, float)).any() for w in windows)}
    if any(len(w) for windows in categorical.values() for w in windows):
        figures["output_categories"] = _categories(plt, categorical, by_name)
    if all(len(w) >= 2 for w in questions):
        figures["query_projection"] = _projection(plt, *questions, _title("query", by_name))
    if any(series.values()):
        figures["quality_series"] = _series(plt, series, n_reference, by_name)
    return figures


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def render_drift_html(signals: list[SignalResult], rows: dict[str, str], figures: dict[str, Any]) -> str:
    """One self-contained page: the verdict and windows, a table of every signal, the plots inline."""
    head = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(rows[k])}</td></tr>"
                   for k in ("drift", "current run", "reference"))
    columns = ("signal", "status", "test", "statistic", "p-value", "threshold", "n reference", "n current", "detail")
    body = "".join(
        f"<tr class='{s.status}'>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
            s.signal, s.status.replace("_", " "), s.test, _number(s.statistic), _number(s.p_value),
            _number(s.threshold), s.n_reference, s.n_current, s.detail)) + "</tr>" for s in signals)
    return ("<!doctype html><html><head><meta charset='utf-8'><title>drift report</title><style>"
            "body{font-family:sans-serif;margin:2em}th{text-align:left;padding-right:2em}"
            "td{padding:2px 8px;vertical-align:top}.drift{background:#fbe3e0}.insufficient_data{color:#777}"
            "</style></head><body><h1>drift report</h1>"
            f"<table>{head}</table><h2>signals</h2><table><tr>{''.join(f'<th>{c}</th>' for c in columns)}</tr>"
            f"{body}</table>{inline_figures(figures)}</body></html>")
