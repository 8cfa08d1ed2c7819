"""Per-question results and run aggregates (pure).

Accuracy counts a failed question (no answer) as incorrect and leaves judge errors out of the
denominator; grounding and hallucination rates are over judged answers only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reasonloop.evaluation.gate import PER_QUESTION
from reasonloop.evaluation.metrics import context_precision, failure_causes, mean, percentile, recall_at_k
from reasonloop.evaluation.stats import bootstrap_ci, mean_ci, percentile_ci
from reasonloop.schemas import AnswerRecord, EvalSummary, Question, QuestionResult, RetrievedChunk, Verdict


def collect_results(questions: list[Question], contexts: list[list[RetrievedChunk]], answers: list[AnswerRecord],
                    verdicts: list[Verdict | None]) -> list[QuestionResult]:
    def result(q: Question, c: list[RetrievedChunk], a: AnswerRecord, v: Verdict | None) -> QuestionResult:
        evidence = [r.doc_id for r in a.evidence(c)]  # ReAct: what its searches found
        return QuestionResult(question=q, retrieved=c, answer=a, verdict=v, recall_at_k=recall_at_k(evidence,
                              q.gold_doc_ids), context_precision=context_precision(evidence, q.gold_doc_ids))

    return [result(*row) for row in zip(questions, contexts, answers, verdicts, strict=True)]


def savings_vs_complex(results: list[QuestionResult], complex_calls: int) -> tuple[int, float]:
    """(tokens, USD) this run saved against answering every question by the COMPLEX route, which makes
    `complex_calls` calls like the chain-of-thought ones made here (estimated from their mean; the run's mean call
    when it made none). Reused answers count as neither."""
    fresh = [r.answer for r in results if not r.answer.cache_hit and r.answer.tokens_in + r.answer.tokens_out]
    if not fresh:
        return 0, 0.0
    reasoned = [a for a in fresh if a.strategy != "direct"] or fresh
    calls = sum(a.n_calls for a in reasoned)
    per_call_tokens = sum(a.tokens_in + a.tokens_out for a in reasoned) / calls
    per_call_cost = sum(a.cost_usd for a in reasoned) / calls
    tokens = sum(a.tokens_in + a.tokens_out for a in fresh)
    cost = sum(a.cost_usd for a in fresh)
    return round(len(fresh) * complex_calls * per_call_tokens - tokens), \
        len(fresh) * complex_calls * per_call_cost - cost


def efficiency(accuracy: float | None, error_rate: float | None, results: list[QuestionResult],
               alpha: float) -> tuple[float | None, str]:
    """The seeds' J = (Q - alpha * error rate) / C with Q the accuracy and C the cost per query: USD when the model
    is priced, else thousands of tokens (an offline or self-hosted model costs tokens, not dollars). Reused
    answers cost nothing this run, so J is computed over the answers made fresh."""
    costs, unit = query_costs(results)
    fresh = [c for c in costs if c is not None]
    if accuracy is None or error_rate is None or not fresh:
        return None, ""
    cost = sum(fresh) / len(fresh)
    return ((accuracy - alpha * error_rate) / cost, unit) if cost > 0 else (None, unit)


def query_costs(results: list[QuestionResult]) -> tuple[list[float | None], str]:
    """C of each question for J: USD when any fresh answer was priced, else thousands of tokens; None for a reused
    answer (no cost this run)."""
    priced = any(r.answer.cost_usd > 0 for r in results if not r.answer.cache_hit)
    unit = "usd_per_query" if priced else "ktokens_per_query"
    return [None if r.answer.cache_hit else r.answer.cost_usd if priced
            else (r.answer.tokens_in + r.answer.tokens_out) / 1000 for r in results], unit


def _error(result: QuestionResult) -> float | None:
    """1 when the question failed or its answer has an unsupported claim, None when the judge could not say."""
    if result.answer.error is not None:
        return 1.0
    return PER_QUESTION["hallucination_rate"](result)


def summarize_results(results: list[QuestionResult], complex_calls: int | None = None,
                      alpha: float = 1.0) -> EvalSummary:
    """The run's aggregates and efficiency J; with `complex_calls` (adaptive depth), also the routes taken and the
    tokens and cost saved against always-COMPLEX."""
    answered = [r for r in results if r.answer.error is None]
    judged = [r.verdict for r in answered if r.verdict is not None and r.verdict.judge_error is None]
    n_judge_errors = sum(1 for r in answered if r.verdict is not None and r.verdict.judge_error is not None)
    scorable = len(results) - n_judge_errors
    recalls = [r.recall_at_k for r in results if r.recall_at_k is not None]
    latencies = [r.answer.latency_s for r in answered if not r.answer.cache_hit]  # a reused answer took no call
    cost = sum(r.answer.cost_usd for r in results)
    referenced = any(v.referenced for v in judged) or not judged  # live questions have no reference: no accuracy
    accuracy = sum(v.correct for v in judged) / scorable if scorable and referenced else None
    bad = len(results) - len(answered) + sum(v.hallucinated for v in judged)
    error_rate = bad / scorable if scorable else None
    j, unit = efficiency(accuracy, error_rate, results, alpha)
    return EvalSummary(
        n_questions=len(results),
        n_failed=len(results) - len(answered),
        n_judge_errors=n_judge_errors,
        accuracy=accuracy,
        grounding_rate=mean([v.grounded_fraction for v in judged]),
        hallucination_rate=mean([float(v.hallucinated) for v in judged]),
        recall_at_k=mean(recalls),
        context_precision=mean([r.context_precision for r in results if r.context_precision is not None]),
        answer_relevance=mean([v.relevance for v in judged if v.relevance is not None]),
        reasoning_quality=mean([q for v in judged if (q := v.reasoning_quality) is not None]),
        latency_p50_s=percentile(latencies, 50),
        latency_p95_s=percentile(latencies, 95),
        context_chars_mean=mean([float(sum(len(c.text) for c in r.answer.evidence(r.retrieved))) for r in answered]),
        tokens_in=sum(r.answer.tokens_in for r in results),
        tokens_out=sum(r.answer.tokens_out for r in results),
        cost_usd=cost,
        cost_per_query_usd=cost / len(results) if results else None,
        cache_hit_rate=sum(r.answer.cache_hit for r in results) / len(results) if results else None,
        n_verify_failed=sum(r.answer.verified is False for r in results),
        n_revised=sum(r.answer.revised for r in results),
        error_rate=error_rate, efficiency_j=j, efficiency_cost_unit=unit, intervals=intervals(results, alpha),
        judge_agreement=mean([v.agreement for v in judged if v.agreement is not None]),
        judge_score_spread=mean([v.score_spread for v in judged if v.score_spread is not None]),
        n_flaky=sum(v.flaky for v in judged),
        **judge_spend([r.verdict for r in answered if r.verdict is not None and not r.verdict.reused]),
        schema_validity=mean([float(v) for r in results if (v := r.answer.schema_valid) is not None
                              and not r.answer.cache_hit]),
        parse_fallback_rate=mean([float(r.answer.parse_fallback) for r in answered if not r.answer.cache_hit]),
        failure_causes=failure_causes([r.answer.error for r in results if r.answer.error is not None]),
        **(adaptive_fields(results, complex_calls) if complex_calls else {}),
    )


def judge_spend(fresh: list[Verdict]) -> dict[str, float]:
    """What judging cost this run (verdicts made now, judge errors included) and how many were escalated."""
    return {"n_escalated": sum(v.escalated for v in fresh),
            "judge_tokens": sum(v.judge_tokens_in + v.judge_tokens_out for v in fresh),
            "judge_cost_usd": sum(v.judge_cost_usd for v in fresh)}


def intervals(results: list[QuestionResult], alpha: float = 1.0,
              confidence: float = 0.95) -> dict[str, tuple[float, float]]:
    """Bootstrap interval (seeded: reproducible) of each per-question metric's mean, of latency p50 and p95, tokens
    and cost per query, and of J, whose accuracy, error and cost are resampled together question by question."""
    found = {metric: mean_ci([v for r in results if (v := value(r)) is not None], confidence)
             for metric, value in PER_QUESTION.items()}
    latencies = [r.answer.latency_s for r in results if r.answer.error is None and not r.answer.cache_hit]
    found["latency_p50_s"] = percentile_ci(latencies, 50, confidence)
    found["latency_p95_s"] = percentile_ci(latencies, 95, confidence)
    found["tokens_per_query"] = mean_ci([r.answer.tokens_in + r.answer.tokens_out for r in results], confidence)
    found["cost_per_query_usd"] = mean_ci([r.answer.cost_usd for r in results], confidence)
    costs, _ = query_costs(results)
    nan = float("nan")
    samples = ([nan if (v := PER_QUESTION["accuracy"](r)) is None else v for r in results],
               [nan if (v := _error(r)) is None else v for r in results],
               [nan if c is None else c for c in costs])

    def j(accuracy: np.ndarray, error: np.ndarray, cost: np.ndarray, axis: int) -> np.ndarray:
        return (np.nanmean(accuracy, axis=axis) - alpha * np.nanmean(error, axis=axis)) / np.nanmean(cost, axis=axis)

    found["efficiency_j"] = bootstrap_ci(samples, j, confidence)
    return {metric: interval for metric, interval in found.items() if interval is not None}


def interval_metrics(summary: EvalSummary) -> dict[str, float]:
    """`<metric>_ci_low` / `<metric>_ci_high` for MLflow."""
    return {f"{m}_ci_{side}": bound for m, (low, high) in summary.intervals.items()
            for side, bound in (("low", low), ("high", high))}


def adaptive_fields(results: list[QuestionResult], complex_calls: int) -> dict[str, float]:
    tokens, cost = savings_vs_complex(results, complex_calls)
    routes = [r.answer.route for r in results]
    return {"route_simple": routes.count("simple"), "route_moderate": routes.count("moderate"),
            "route_complex": routes.count("complex"), "tokens_saved_vs_complex": tokens,
            "cost_saved_vs_complex_usd": cost}


def results_table(results: list[QuestionResult]) -> pd.DataFrame:
    """The per-question table logged to MLflow: one row per question, flat columns."""
    rows = []
    for r in results:
        v = r.verdict
        rows.append({
            "question_id": r.question.id, "question": r.question.question, "reference": r.question.reference,
            "answer": r.answer.answer, "error": r.answer.error or "",
            "citations": ", ".join(r.answer.citations), "retrieved": ", ".join(c.chunk_id for c in r.retrieved),
            "top_score": r.retrieved[0].score if r.retrieved else None, "recall_at_k": r.recall_at_k,
            "context_precision": r.context_precision,
            "confidence": r.answer.confidence, "correct": v.correct if v else None,
            "correctness": v.correctness if v else None, "exact_match": v.exact_match if v else None,
            "token_f1": v.token_f1 if v else None, "grounded_fraction": v.grounded_fraction if v else None,
            "hallucinated": v.hallucinated if v else None, "judge_error": (v.judge_error or "") if v else "",
            "relevance": v.relevance if v else None, "reasoning_quality": v.reasoning_quality if v else None,
            "consistency": v.consistency if v else None, "completeness": v.completeness if v else None,
            "clarity": v.clarity if v else None,
            "judge_reason": v.reason if v else "", "judge_confidence": v.confidence if v else None,
            "judge_escalated": v.escalated if v else None,
            "tokens_in": r.answer.tokens_in, "tokens_out": r.answer.tokens_out,
            "latency_s": r.answer.latency_s, "cost_usd": r.answer.cost_usd, "cache_hit": r.answer.cache_hit,
            "strategy": r.answer.strategy, "route": r.answer.route or "", "complexity": r.answer.complexity,
            "n_calls": r.answer.n_calls, "verified": r.answer.verified, "revised": r.answer.revised,
            "prompt": r.answer.prompt, "model": r.answer.model,
        })
    return pd.DataFrame(rows)


def summary_rows(summary: EvalSummary) -> dict[str, str]:
    """The headline figures as display strings (CLI table and Prefect artifact share them)."""
    def fmt(value: float | None, pattern: str) -> str:
        return "n/a" if value is None else pattern.format(value)

    def ci(metric: str) -> str:
        low, high = summary.intervals.get(metric, (None, None))
        return f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""

    return {
        "questions": f"{summary.n_questions} ({summary.n_failed} failed, {summary.n_judge_errors} judge errors)",
        "accuracy [95% CI]": fmt(summary.accuracy, "{:.3f}") + ci("accuracy"),
        "grounding rate": fmt(summary.grounding_rate, "{:.3f}"),
        "hallucination rate": fmt(summary.hallucination_rate, "{:.3f}"),
        "context recall@k / precision": f"{fmt(summary.recall_at_k, '{:.3f}')} / "
                                        f"{fmt(summary.context_precision, '{:.3f}')}",
        "answer relevance": fmt(summary.answer_relevance, "{:.3f}"),
        "reasoning quality": fmt(summary.reasoning_quality, "{:.3f}"),
        "latency p50 / p95": f"{fmt(summary.latency_p50_s, '{:.3f}')} s / {fmt(summary.latency_p95_s, '{:.3f}')} s",
        "tokens in / out": f"{summary.tokens_in} / {summary.tokens_out}",
        "cost": f"${summary.cost_usd:.4f} (${fmt(summary.cost_per_query_usd, '{:.5f}')} per query)",
        "answers reused (cache)": fmt(summary.cache_hit_rate, "{:.0%}"),
        **({"plain-text answers": f"{summary.parse_fallback_rate:.1%} (the reply missed the schema twice; in review)"}
           if summary.parse_fallback_rate else {}),
        **({"failure causes": "\n".join(summary.failure_causes)} if summary.failure_causes else {}),
        "efficiency J": f"{fmt(summary.efficiency_j, '{:.3f}')} (C in {summary.efficiency_cost_unit or 'n/a'})",
        "judge spend": f"{summary.judge_tokens} tokens, ${summary.judge_cost_usd:.4f} "
                       f"({summary.n_escalated} escalated to the stronger judge)",
        **({"routes simple / moderate / complex":
            f"{summary.route_simple} / {summary.route_moderate} / {summary.route_complex} (saved "
            f"{summary.tokens_saved_vs_complex} tokens, ${summary.cost_saved_vs_complex_usd:.4f} vs always-complex)"}
           if summary.route_simple is not None else {}),
    }
