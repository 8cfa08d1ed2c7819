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

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from reasonloop.errors import ReasonloopError
from reasonloop.monitoring.config import QualityDriftConfig
from reasonloop.monitoring.runs import baseline_run_id, finished_runs, run_results
from reasonloop.monitoring.tracking import Tracker
from reasonloop.retrieval.config import ChromaConfig
from reasonloop.schemas import QuestionResult, Record

NO_RUN = "no finished nightly-eval run yet: run `reasonloop eval` first"
NO_LIVE_RUN = "no finished live-eval run yet: run `reasonloop eval --source traces` first"


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
    kind: str = "nightly-eval"  # the runs compared: nightly-eval (saved question sets) or live-eval (live traffic)
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


def _run_ref(run: Any) -> RunRef:
    params = run.data.params
    return RunRef(run_id=run.info.run_id, start_time=run.info.start_time,
                  index_ref=(f"v{params['index.version']}@{params['index.content_hash'][:12]}"
                             if "index.version" in params and "index.content_hash" in params else None),
                  index_collection=params.get("index.collection"))


def _current_run(tracker: Tracker, experiment_id: str | None, run_id: str | None, kind: str) -> Any | None:
    if run_id is None:
        newest = finished_runs(tracker, experiment_id, 1) if experiment_id else []
        return newest[0] if newest else None
    try:
        run = tracker.client().get_run(run_id)
    except Exception:  # noqa: BLE001 - MLflow raises a generic MlflowException for an unknown run
        raise ReasonloopError(f"no run {run_id} in the tracking store: pick a {kind} run from "
                              "`reasonloop runs`") from None
    if run.info.experiment_id != experiment_id or run.info.status != "FINISHED":
        raise ReasonloopError(f"run {run_id} is not a finished {kind} run ({run.info.status}); pick one from "
                              "`reasonloop runs`")
    return run


def _readable(tracker: Tracker, run_id: str) -> list[QuestionResult] | None:
    try:
        return run_results(tracker, run_id)
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


def read_windows(tracker: Tracker, window: int, run_id: str | None = None, kind: str = "nightly-eval") -> DriftWindows:
    """The current run (`run_id`, else the newest finished run of `kind`: nightly-eval, or live-eval for live
    traffic) and its reference: the baseline run when one is set (saved question sets only; it is not the current
    run), else the `window` finished runs before it."""
    client = tracker.client()
    experiment = client.get_experiment_by_name(tracker.experiment_name(kind))
    run = _current_run(tracker, experiment.experiment_id if experiment else None, run_id, kind)
    if run is None:
        return DriftWindows(current=None, reference=[], kind=kind, reference_kind="none",
                            note=NO_RUN if kind == "nightly-eval" else NO_LIVE_RUN)
    current = _run_ref(run)
    current_results = _readable(tracker, current.run_id)
    baseline = baseline_run_id(tracker) if kind == "nightly-eval" else None
    reference_kind: Literal["baseline", "previous_runs"] = "baseline"
    try:
        reference_runs = [client.get_run(baseline)] if baseline and baseline != current.run_id else []
    except Exception:  # noqa: BLE001 - a deleted baseline run: fall back to the previous runs
        reference_runs = []
    if not reference_runs:
        reference_kind, reference_runs = "previous_runs", finished_runs(tracker, run.info.experiment_id, window,
                                                                         before=current.start_time)[::-1]
    reference = [_run_ref(r) for r in reference_runs]
    readable = {r.run_id: _readable(tracker, r.run_id) for r in reference}
    newest_first = [x for r in reversed(reference) for x in readable[r.run_id] or []]
    note = (f"run {current.run_id} has no readable eval/results.jsonl" if current_results is None
            else NO_REFERENCE if not reference
            else "no reference run has a readable eval/results.jsonl" if not any(readable.values()) else None)
    return DriftWindows(current=current, reference=reference, kind=kind,
                        reference_kind=reference_kind if reference else "none", current_results=current_results or [],
                        note=note, reference_results=one_per_question(newest_first))


def read_quality_series(tracker: Tracker, current: RunRef | None, cfg: QualityDriftConfig) -> QualitySeries:
    """The configured metrics of the last `history` finished nightly-eval runs up to the current one, oldest first
    (NaN where a run did not log the metric)."""
    if current is None:
        return QualitySeries(values={m: [] for m in cfg.metrics})
    client = tracker.client()
    experiment_id = client.get_run(current.run_id).info.experiment_id
    runs = finished_runs(tracker, experiment_id, cfg.history, until=current.start_time)[::-1]
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


def read_index_pair(chroma: ChromaConfig, chroma_path: Path, windows: DriftWindows) -> IndexPair | None:
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

    client = chroma_client(chroma, chroma_path)
    try:
        old_vectors, old_texts = _chunks(client, old.index_collection)
        new_vectors, new_texts = _chunks(client, new.index_collection)
    except NotFoundError:
        return IndexPair(old=pair.old, new=pair.new, missing="an index version is no longer kept (index.keep_versions)")
    return IndexPair(old=pair.old, new=pair.new, old_vectors=old_vectors, new_vectors=new_vectors,
                     old_texts=old_texts, new_texts=new_texts)
