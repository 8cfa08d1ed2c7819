"""From the windows to the signals: one value per question and signal (question embeddings, top retrieval score,
answer length and tokens, refusals, strategy mix, citations), then every drift test of drift_stats.py with the
`drift:` thresholds, in a fixed order so the logged metric names are stable."""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reasonloop.monitoring import drift_stats as stats
from reasonloop.monitoring.config import DriftConfig, OutputDriftConfig, QualityDriftConfig
from reasonloop.monitoring.drift_stats import SignalResult
from reasonloop.monitoring.drift_windows import DriftWindows, IndexPair, QualitySeries
from reasonloop.retrieval.embeddings import Embedder
from reasonloop.schemas import AnswerRecord, QuestionResult

NUMERIC = ("retrieval", "output.answer_length", "output.tokens")


CATEGORICAL = ("output.refusal", "output.strategy", "output.citation")


@dataclass(frozen=True)
class WindowSamples:
    """Per-question values of both windows, (reference, current) each: question embeddings, numbers and categories
    (NaN and None: no value, e.g. an empty retrieval or a failed answer)."""

    questions: tuple[np.ndarray, np.ndarray]
    numeric: dict[str, tuple[np.ndarray, np.ndarray]]
    categorical: dict[str, tuple[list[Hashable | None], list[Hashable | None]]]


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


def measure_windows(windows: DriftWindows, embedder: Embedder, cfg: OutputDriftConfig) -> WindowSamples:
    """Question embeddings (the project's embedder) and per-answer values of both windows."""
    ref, cur = answer_values(windows.reference_results, cfg), answer_values(windows.current_results, cfg)
    questions = (embedder.embed(distinct_questions(windows.reference_results)),
                 embedder.embed(distinct_questions(windows.current_results)))
    return WindowSamples(questions=questions,
                         numeric={n: (np.asarray(ref[n], dtype=float), np.asarray(cur[n], dtype=float))
                                  for n in NUMERIC},
                         categorical={n: (ref[n], cur[n]) for n in CATEGORICAL})


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


def detect_drift(samples: WindowSamples, series: QualitySeries, pair: IndexPair | None, config: DriftConfig,
                 note: str | None) -> list[SignalResult]:
    """Every signal, in a fixed order (so the logged metric names are stable): query, retrieval, output.*,
    quality.<metric>, corpus."""
    signals = [*window_signals(samples, config), *quality_signals(series, config.quality), corpus_signal(pair, config)]
    return [explain(s, note) for s in signals]
