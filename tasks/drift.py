"""Drift: read the windows back from MLflow (the current nightly-eval run, its reference runs, the series of nightly
metrics, the chunks of both runs' index versions), turn them into per-question values, run the statistics of
reasonloop/monitoring/drift_stats.py with the `drift:` thresholds, log the drift run, and raise the alarm on drift.

The reference window is the baseline run (`reasonloop baseline set`) when one is set and it is not the current run,
else the `drift.window` nightly-eval runs before the current one. A window holds one value per distinct question: a
question set asked every night is one sample, not five copies of it (which would make a test's p-value far too
small and five runs of 18 questions look like 90). From the reference runs each question contributes its newest
freshly generated answer (a reused one only when none was generated in the window): an answer reused from the cache
records 0 tokens for the run that reused it, so it counts for its length but not its tokens; failed answers count
for neither.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import time
import urllib.error
import urllib.request
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from reasonloop.errors import ReasonloopError
from reasonloop.monitoring import drift_stats as stats
from reasonloop.monitoring.config import DriftConfig, OutputDriftConfig, QualityDriftConfig
from reasonloop.monitoring.drift_report import alert_payload, drift_plots, drift_rows, render_drift_html, signal_metrics
from reasonloop.monitoring.drift_stats import SignalResult
from reasonloop.monitoring.report import close_figures
from reasonloop.monitoring.tracking import baseline_run_id, ensure_experiment, experiment_name, run_results, run_url
from reasonloop.redact import redact
from reasonloop.retrieval.embeddings import Embedder
from reasonloop.schemas import AnswerRecord, FlowReport, QuestionResult, Record
from reasonloop.settings import Settings
from tasks.retry import IO_RETRIES
from tasks.track import common_params, flow_run_tags

EVENT = "reasonloop.drift.detected"
NUMERIC = ("retrieval", "output.answer_length", "output.tokens")
CATEGORICAL = ("output.refusal", "output.strategy", "output.citation")
NO_RUN = "no finished nightly-eval run yet: run `reasonloop eval` first"
NO_REFERENCE = ("no reference yet: this is the first nightly-eval run (set one with `reasonloop baseline set RUN_ID` "
                "or let more nightly evals run)")


class RunRef(Record):
    """A finished nightly-eval run, as the drift flow reads it."""

    run_id: str
    start_time: int  # ms since the epoch
    index_ref: str | None = None  # "v3@<hash>" of the index version it read
    index_collection: str | None = None


class DriftWindows(Record):
    """The current run and its reference runs (oldest first) with their per-question results (the reference's one per
    question); `note` says why a window is empty and is shown on every signal that lacks data."""

    current: RunRef | None
    reference: list[RunRef]
    reference_kind: Literal["baseline", "previous_runs", "none"]
    current_results: list[QuestionResult] = []
    reference_results: list[QuestionResult] = []
    note: str | None = None

    def describe_reference(self) -> str:
        ids = ", ".join(r.run_id for r in self.reference)
        return {"baseline": f"baseline run {ids}", "previous_runs": f"{len(self.reference)} previous runs ({ids})",
                "none": "none"}[self.reference_kind]


class QualitySeries(Record):
    """Nightly metrics, oldest run first (the current run last); the first `n_reference` runs set the reference."""

    run_ids: list[str] = []
    values: dict[str, list[float]] = {}
    n_reference: int = 0


@dataclass(frozen=True)
class WindowSamples:
    """Per-question values of both windows, (reference, current) each: question embeddings, numbers and categories
    (NaN and None: no value, e.g. an empty retrieval or a failed answer)."""

    questions: tuple[np.ndarray, np.ndarray]
    numeric: dict[str, tuple[np.ndarray, np.ndarray]]
    categorical: dict[str, tuple[list[Hashable | None], list[Hashable | None]]]


@dataclass(frozen=True)
class IndexPair:
    """The chunks of the index version the reference read (old) and the one the current run read (new)."""

    old: str
    new: str
    same: bool = False
    missing: str | None = None  # why the chunks could not be read
    old_vectors: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    new_vectors: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    old_texts: list[str] = field(default_factory=list)
    new_texts: list[str] = field(default_factory=list)


# --- reading the windows back --------------------------------------------------------------------------------------

def _run_ref(run: Any) -> RunRef:
    params = run.data.params
    return RunRef(run_id=run.info.run_id, start_time=run.info.start_time,
                  index_ref=(f"v{params['index.version']}@{params['index.content_hash'][:12]}"
                             if "index.version" in params and "index.content_hash" in params else None),
                  index_collection=params.get("index.collection"))


def _finished_runs(client: Any, experiment_id: str, limit: int, *, before: int | None = None,
                   until: int | None = None) -> list[Any]:
    """Finished runs of an experiment, newest first, started before (or until) a time in ms."""
    where = ["attributes.status = 'FINISHED'"]
    where += [f"attributes.start_time < {before}"] if before is not None else []
    where += [f"attributes.start_time <= {until}"] if until is not None else []
    return list(client.search_runs([experiment_id], " AND ".join(where), max_results=limit,
                                   order_by=["attributes.start_time DESC"]))


def _current_run(client: Any, experiment_id: str | None, run_id: str | None) -> Any | None:
    if run_id is None:
        newest = _finished_runs(client, experiment_id, 1) if experiment_id else []
        return newest[0] if newest else None
    try:
        run = client.get_run(run_id)
    except Exception:  # noqa: BLE001 - MLflow raises a generic MlflowException for an unknown run
        raise ReasonloopError(f"no run {run_id} in the tracking store: pick a nightly-eval run from "
                              "`reasonloop runs`") from None
    if run.info.experiment_id != experiment_id or run.info.status != "FINISHED":
        raise ReasonloopError(f"run {run_id} is not a finished nightly-eval run ({run.info.status}); pick one from "
                              "`reasonloop runs`")
    return run


def _readable(settings: Settings, run_id: str) -> list[QuestionResult] | None:
    try:
        return run_results(settings, run_id)
    except ReasonloopError:
        return None


def one_per_question(newest_first: Sequence[QuestionResult]) -> list[QuestionResult]:
    """Each question once: its newest freshly generated answer, else its newest reused one."""
    chosen: dict[str, QuestionResult] = {}
    for result in newest_first:
        held = chosen.get(result.question.id)
        if held is None or (held.answer.cache_hit and not result.answer.cache_hit):
            chosen[result.question.id] = result
    return list(chosen.values())


@task(name="read-drift-windows", **IO_RETRIES, cache_policy=NO_CACHE)
def read_windows(settings: Settings, window: int, run_id: str | None = None) -> DriftWindows:
    """The current run (`run_id`, else the newest finished nightly eval) and its reference: the baseline run when
    one is set (and it is not the current run), else the `window` finished runs before it."""
    import mlflow

    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name(settings, "nightly-eval"))
    run = _current_run(client, experiment.experiment_id if experiment else None, run_id)
    if run is None:
        return DriftWindows(current=None, reference=[], reference_kind="none", note=NO_RUN)
    current = _run_ref(run)
    current_results = _readable(settings, current.run_id)
    baseline = baseline_run_id(settings)
    kind: Literal["baseline", "previous_runs"] = "baseline"
    try:
        reference_runs = [client.get_run(baseline)] if baseline and baseline != current.run_id else []
    except Exception:  # noqa: BLE001 - a deleted baseline run: fall back to the previous runs
        reference_runs = []
    if not reference_runs:
        kind, reference_runs = "previous_runs", _finished_runs(client, run.info.experiment_id, window,
                                                               before=current.start_time)[::-1]
    reference = [_run_ref(r) for r in reference_runs]
    readable = {r.run_id: _readable(settings, r.run_id) for r in reference}
    newest_first = [x for r in reversed(reference) for x in readable[r.run_id] or []]
    note = (f"run {current.run_id} has no readable eval/results.jsonl" if current_results is None
            else NO_REFERENCE if not reference
            else "no reference run has a readable eval/results.jsonl" if not any(readable.values()) else None)
    return DriftWindows(current=current, reference=reference, reference_kind=kind if reference else "none",
                        current_results=current_results or [], note=note,
                        reference_results=one_per_question(newest_first))


@task(name="read-quality-series", **IO_RETRIES, cache_policy=NO_CACHE)
def read_quality_series(settings: Settings, current: RunRef | None, cfg: QualityDriftConfig) -> QualitySeries:
    """The configured metrics of the last `history` finished nightly-eval runs up to the current one, oldest first
    (NaN where a run did not log the metric)."""
    import mlflow

    if current is None:
        return QualitySeries(values={m: [] for m in cfg.metrics})
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    experiment_id = client.get_run(current.run_id).info.experiment_id
    runs = _finished_runs(client, experiment_id, cfg.history, until=current.start_time)[::-1]
    return QualitySeries(run_ids=[r.info.run_id for r in runs], n_reference=min(cfg.reference_runs, len(runs) - 1),
                         values={m: [float(r.data.metrics.get(m, math.nan)) for r in runs] for m in cfg.metrics})


def _chunks(client: Any, collection_name: str, page: int = 5000) -> tuple[np.ndarray, list[str]]:
    collection = client.get_collection(collection_name)
    vectors: list[np.ndarray] = []
    texts: list[str] = []
    for offset in range(0, collection.count(), page):
        got = collection.get(include=["embeddings", "documents"], limit=page, offset=offset)
        vectors.append(np.asarray(got["embeddings"], dtype=float))
        texts += [t or "" for t in got["documents"]]
    return (np.vstack(vectors) if vectors else np.empty((0, 0))), texts


@task(name="read-index-pair", **IO_RETRIES, cache_policy=NO_CACHE)
def read_index_pair(settings: Settings, windows: DriftWindows) -> IndexPair | None:
    """Chunk embeddings and texts of the index version the newest reference run read and of the current run's
    (None without both runs); a version no longer kept is `missing`, not an error."""
    if windows.current is None or not windows.reference:
        return None
    old, new = windows.reference[-1], windows.current
    if not (old.index_collection and new.index_collection):
        return IndexPair(old=str(old.index_ref), new=str(new.index_ref), missing="a run logged no index version")
    pair = IndexPair(old=f"{old.index_ref} ({old.index_collection})", new=f"{new.index_ref} ({new.index_collection})")
    if old.index_ref == new.index_ref:
        return IndexPair(old=pair.old, new=pair.new, same=True)
    from chromadb.errors import NotFoundError

    from reasonloop.retrieval.vectorstore import chroma_client  # chromadb import is slow: only when a reindex happened

    client = chroma_client(settings)
    try:
        old_vectors, old_texts = _chunks(client, old.index_collection)
        new_vectors, new_texts = _chunks(client, new.index_collection)
    except NotFoundError:
        return IndexPair(old=pair.old, new=pair.new, missing="an index version is no longer kept (index.keep_versions)")
    return IndexPair(old=pair.old, new=pair.new, old_vectors=old_vectors, new_vectors=new_vectors,
                     old_texts=old_texts, new_texts=new_texts)


# --- per-question values -------------------------------------------------------------------------------------------

def top_score(result: QuestionResult) -> float:
    """The best chunk's cosine when dense retrieval saw it, else its ranking score; NaN for an empty retrieval.
    Cosine first because hybrid mode's fused score is standardised within each question's list, which hides a
    corpus that answers questions worse."""
    if not result.retrieved:
        return math.nan
    top = min(result.retrieved, key=lambda c: c.rank)
    return top.dense_score if top.dense_score is not None else top.score


def is_refusal(answer: AnswerRecord, patterns: re.Pattern[str] | None) -> bool:
    """Refused by the input guardrail, or an answer that says it cannot answer."""
    return (any(g.startswith("input: refused") for g in answer.guardrails)
            or bool(patterns and patterns.search(answer.answer)))


def answer_values(results: Sequence[QuestionResult], cfg: OutputDriftConfig) -> dict[str, list[Any]]:
    """One value per question for each numeric and categorical signal (NaN / None where there is none)."""
    patterns = re.compile("|".join(f"(?:{p})" for p in cfg.refusal_patterns), re.I) if cfg.refusal_patterns else None
    values: dict[str, list[Any]] = {name: [] for name in (*NUMERIC, *CATEGORICAL)}
    for result in results:
        answer, failed = result.answer, result.answer.error is not None
        values["retrieval"].append(top_score(result))
        values["output.answer_length"].append(math.nan if failed else float(len(answer.answer)))
        values["output.tokens"].append(math.nan if failed or answer.cache_hit else float(answer.tokens_out))
        values["output.refusal"].append(None if failed else is_refusal(answer, patterns))
        values["output.strategy"].append(None if failed else answer.strategy)
        values["output.citation"].append(None if failed else bool(answer.citations))
    return values


def distinct_questions(results: Sequence[QuestionResult]) -> list[str]:
    return list(dict.fromkeys(r.question.question for r in results))


@task(name="measure-drift-windows", cache_policy=NO_CACHE)
def measure_windows(windows: DriftWindows, embedder: Embedder, cfg: OutputDriftConfig) -> WindowSamples:
    """Question embeddings (the project's embedder) and per-answer values of both windows."""
    ref, cur = answer_values(windows.reference_results, cfg), answer_values(windows.current_results, cfg)
    questions = (embedder.embed(distinct_questions(windows.reference_results)),
                 embedder.embed(distinct_questions(windows.current_results)))
    return WindowSamples(questions=questions,
                         numeric={n: (np.asarray(ref[n], dtype=float), np.asarray(cur[n], dtype=float))
                                  for n in NUMERIC},
                         categorical={n: (ref[n], cur[n]) for n in CATEGORICAL})


# --- the signals ---------------------------------------------------------------------------------------------------

def window_signals(samples: WindowSamples, config: DriftConfig) -> list[SignalResult]:
    q, r, o, n = config.query, config.retrieval, config.output, config.min_samples
    signals = [stats.detect_query_drift(*samples.questions, alpha=q.alpha, min_samples=n, max_samples=q.max_samples,
                                        n_permutations=q.n_permutations, seed=config.seed),
               stats.detect_retrieval_drift(*samples.numeric["retrieval"], alpha=r.alpha, psi_threshold=r.psi_threshold,
                                            low_score=r.low_score, n_bins=r.n_bins, min_samples=n)]
    signals += [stats.detect_numeric_drift(*samples.numeric[name], signal=name, alpha=o.alpha, n_bins=o.n_bins,
                                           psi_threshold=o.psi_threshold, min_samples=n) for name in NUMERIC[1:]]
    signals += [stats.detect_categorical_drift(*samples.categorical[name], signal=name, alpha=o.alpha, min_samples=n,
                                               min_count=o.min_count) for name in CATEGORICAL]
    return signals


def quality_signals(series: QualitySeries, cfg: QualityDriftConfig) -> list[SignalResult]:
    return [stats.detect_quality_drift(series.values.get(metric, []), max(series.n_reference, 0),
                                       signal=f"quality.{metric}", k=cfg.k, h=cfg.h, min_samples=cfg.min_samples)
            for metric in cfg.metrics]


def corpus_signal(pair: IndexPair | None, config: DriftConfig) -> SignalResult:
    """Old vs new chunks when the current run read another index version than the reference; no change when both
    read the same one."""
    cfg, test = config.corpus, "mann_whitney_novelty"
    if pair is None or pair.missing:
        return SignalResult(signal="corpus", test=test, threshold=cfg.alpha, status="insufficient_data",
                            n_reference=0, n_current=0,
                            detail=f"{pair.old} -> {pair.new}: {pair.missing}" if pair else "no reference run")
    if pair.same:
        return SignalResult(signal="corpus", test=test, statistic=0.0, threshold=cfg.alpha, status="ok",
                            n_reference=0, n_current=0, extra={"new_vocab_share": 0.0},
                            detail=f"both windows read index {pair.new}: no reindex in between")
    result = stats.detect_corpus_drift(pair.old_vectors, pair.new_vectors, pair.old_texts, pair.new_texts,
                                       alpha=cfg.alpha, min_changed=cfg.min_changed, min_samples=config.min_samples,
                                       max_samples=cfg.max_samples, seed=config.seed)
    return result.model_copy(update={"detail": f"{pair.old} -> {pair.new}: {result.detail}"})


def explain(signal: SignalResult, note: str | None) -> SignalResult:
    """Put the reason a window is empty in front of an insufficient signal's own detail."""
    if note is None or signal.status != "insufficient_data":
        return signal
    return signal.model_copy(update={"detail": f"{note}; {signal.detail}"})


@task(name="detect-drift", cache_policy=NO_CACHE)
def detect_drift(samples: WindowSamples, series: QualitySeries, pair: IndexPair | None, config: DriftConfig,
                 note: str | None) -> list[SignalResult]:
    """Every signal, in a fixed order (so the logged metric names are stable): query, retrieval, output.*,
    quality.<metric>, corpus."""
    signals = [*window_signals(samples, config), *quality_signals(series, config.quality), corpus_signal(pair, config)]
    return [explain(s, note) for s in signals]


# --- logging and the alarm -----------------------------------------------------------------------------------------

@task(name="log-drift-run", cache_policy=NO_CACHE)
def log_drift_run(settings: Settings, embedder: Embedder, config: DriftConfig, windows: DriftWindows,
                  samples: WindowSamples, series: QualitySeries, signals: list[SignalResult]) -> FlowReport:
    """One run in `<prefix>-drift`: per-signal metrics, the windows as params, tags `drift` and `drift.signals`,
    `drift/signals.json`, `drift/report.html` and its plots; the current nightly-eval run is tagged with the
    verdict and this run's id."""
    import mlflow

    experiment_id = ensure_experiment(settings, "drift")
    fired = [s.signal for s in signals if s.drifted]
    current_id = windows.current.run_id if windows.current else None
    reference_ids = [r.run_id for r in windows.reference]
    metrics = signal_metrics(signals)
    params = {**common_params(settings, embedder), "current.run_id": current_id or "none",
              "reference.kind": windows.reference_kind, "reference.run_ids": ",".join(reference_ids) or "none",
              "window": config.window, "min_samples": config.min_samples, "quality.history": config.quality.history,
              "quality.reference_runs": config.quality.reference_runs,
              "webhook": "configured" if config.webhook() else "none"}
    tags = {**flow_run_tags("drift"), "drift": str(bool(fired)).lower(), "drift.signals": ",".join(fired)}
    rows = drift_rows(signals, current_id, windows.describe_reference())
    document = {"drift": bool(fired), "fired": fired, "current_run_id": current_id, "note": windows.note,
                "reference_kind": windows.reference_kind, "reference_run_ids": reference_ids,
                "quality_run_ids": series.run_ids, "signals": [s.model_dump() for s in signals]}
    figures = drift_plots(signals, numeric=samples.numeric, categorical=samples.categorical,
                          questions=samples.questions, series=series.values, n_reference=series.n_reference)
    try:
        with mlflow.start_run(experiment_id=experiment_id, run_name="drift", tags=tags) as run:
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            mlflow.log_dict(document, "drift/signals.json")
            for name, figure in figures.items():
                mlflow.log_figure(figure, f"drift/plots/{name}.png")
            mlflow.log_text(render_drift_html(signals, rows, figures), "drift/report.html")
    finally:
        close_figures(figures)
    if current_id:  # the verdict on the nightly run too, as tags and as vitals over time
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        flags = {"drift": float(bool(fired)), "drift.n_signals": float(len(fired)),
                 **{f"drift.{s.signal}": float(s.drifted) for s in signals if s.status != "insufficient_data"}}
        mlflow.MlflowClient(settings.mlflow_tracking_uri).log_batch(
            current_id, metrics=[Metric(k, v, now, 0) for k, v in flags.items()],
            tags=[RunTag("reasonloop.drift", tags["drift"]), RunTag("reasonloop.drift.run_id", run.info.run_id)])
    return FlowReport(flow="drift", run_id=run.info.run_id, experiment_id=experiment_id,
                      tracking_uri=settings.mlflow_tracking_uri, metrics=metrics, rows=rows)


def post_webhook(url: str, payload: dict[str, Any], timeout_s: float) -> str | None:
    """POST `payload` as JSON; None when the endpoint answered 2xx, else why not. The reason never holds the URL
    (a chat webhook's URL is its secret)."""
    if not url.startswith(("http://", "https://")):
        return "not an http(s) URL"
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "reasonloop-drift"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s):  # the scheme is checked above
            pass
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        return redact(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}")
    return None


@task(name="raise-drift-alarm", cache_policy=NO_CACHE)
def raise_alarm(settings: Settings, config: DriftConfig, report: FlowReport, windows: DriftWindows,
                signals: list[SignalResult]) -> str:
    """On drift: a Prefect event `reasonloop.drift.detected` (resource `reasonloop.drift.<experiment id>`) and,
    when configured, the webhook. A webhook that fails is a warning. Returns (and tags the drift run with
    `drift.webhook`) what happened: no drift | off | sent | failed."""
    import mlflow

    if not any(s.drifted for s in signals):
        return "no drift"
    payload = alert_payload(signals, drift_run_id=report.run_id, experiment=experiment_name(settings, "drift"),
                            current_run_id=windows.current.run_id if windows.current else None,
                            reference_kind=windows.reference_kind,
                            reference_run_ids=[r.run_id for r in windows.reference],
                            run_url=redact(run_url(settings, report.experiment_id, report.run_id)))
    emit_event(event=EVENT, payload=payload,
               resource={"prefect.resource.id": f"reasonloop.drift.{report.experiment_id}",
                         "prefect.resource.name": experiment_name(settings, "drift")},
               related=[{"prefect.resource.id": f"mlflow.run.{report.run_id}", "prefect.resource.role": "drift-run"}])
    url, status = config.webhook(), "off"
    if url:
        error = post_webhook(url, {"event": EVENT, **payload}, config.webhook_timeout_s)
        status = "sent" if error is None else "failed"
        if error:
            get_run_logger().warning("drift webhook not delivered (%s); the drift run %s holds the report", error,
                                     report.run_id)
    mlflow.MlflowClient(settings.mlflow_tracking_uri).set_tag(report.run_id, "drift.webhook", status)
    return status
