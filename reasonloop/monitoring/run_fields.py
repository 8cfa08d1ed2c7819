"""What runs log, flattened from the layers' records: numeric fields as metrics, retrieval and index settings as
params, the gate's and the safety suite's figures, the quarantine table, the summary as markdown."""

from __future__ import annotations

from typing import Any

import pandas as pd

from reasonloop.evaluation.gate import GateReport
from reasonloop.evaluation.safety import SafetyReport
from reasonloop.retrieval.config import RetrievalConfig
from reasonloop.retrieval.index_versions import Manifest
from reasonloop.schemas import FlowReport, Reject, RetrievalQuality


def numeric(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def quality_metrics(reports: list[RetrievalQuality]) -> dict[str, float]:
    """Retrieval metrics per labeled dataset, named `retrieval.<dataset>.<metric>`."""
    return {f"retrieval.{k}": v for report in reports for k, v in report.metrics().items()}


def retrieval_params(r: RetrievalConfig) -> dict[str, Any]:
    return {"retrieval.mode": r.mode, "retrieval.top_k": r.top_k, "retrieval.candidates": r.candidates,
            "retrieval.fusion": r.fusion, "retrieval.rrf_k": r.rrf_k, "retrieval.dense_weight": r.dense_weight,
            "retrieval.bm25_weight": r.bm25_weight, "retrieval.bm25": r.bm25.model_dump_json()}


def index_params(manifest: Manifest) -> dict[str, Any]:
    return {"index.version": manifest.version, "index.content_hash": manifest.content_hash,
            "index.collection": manifest.collection}


def gate_metrics(gate: GateReport) -> dict[str, float]:
    """`gate.passed` and, per checked metric, how much worse it got and the interval of the change."""
    values: dict[str, float] = {"gate.passed": float(gate.passed)}
    for check in gate.checks:
        values |= {f"gate.{check.metric}.{k}": v for k, v in
                   (("worse_by", check.worse_by), ("ci_low", check.ci_low), ("ci_high", check.ci_high),
                    ("n_pairs", check.n_pairs), ("regressed", float(check.regressed))) if v is not None}
    return values


def safety_metrics(safety: SafetyReport | None) -> dict[str, float]:
    if safety is None:
        return {}
    return {"safety_pass_rate": safety.pass_rate,
            **{f"safety.{kind}_pass_rate": rate for kind, rate in safety.pass_rate_by_kind.items()}}


def quarantine_table(rejects: list[Reject]) -> pd.DataFrame:
    return pd.DataFrame([{"file": r.source, "line": r.line, "reason": r.reason} for r in rejects],
                        columns=["file", "line", "reason"])


def markdown_cell(value: str) -> str:
    """A value as one markdown table cell: its lines kept apart, its pipes escaped."""
    return value.replace("|", "\\|").replace("\n", "<br>")


def summary_markdown(report: FlowReport) -> str:
    lines = [f"# {report.flow}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {markdown_cell(v)} |" for k, v in report.rows.items()]
    lines += ["", f"MLflow run `{report.run_id}` (experiment {report.experiment_id})"]
    return "\n".join(lines)
