"""Human review routing: which answers a person should look at, and why. The queue of a run is an MLflow
artifact (`eval/review.jsonl`, also a table), so `reasonloop review` reads it from any machine that sees the
tracking server."""

from __future__ import annotations

from typing import Any

from reasonloop.evaluation.config import ReviewConfig
from reasonloop.retrieval.injection import detect_injection
from reasonloop.schemas import QuestionResult

QUEUE_ARTIFACT = "eval/review.jsonl"


def review_reasons(result: QuestionResult, cfg: ReviewConfig) -> list[str]:
    """Why this answer needs a person (empty: it does not): it failed, it is a reply's plain text (the reply missed
    the schema twice), its confidence is under the threshold, it failed its self-check, the judge found unsupported
    claims or split its votes, or the answer or its evidence carries injection-like text."""
    answer, verdict = result.answer, result.verdict
    reasons = []
    if answer.error is not None:
        reasons.append(f"failed: {answer.error[:200]}")
    elif answer.parse_fallback:
        reasons.append("plain-text reply kept as the answer: it did not match the schema, twice")
    elif answer.confidence < cfg.min_confidence:
        reasons.append(f"confidence {answer.confidence:.2f} < {cfg.min_confidence}")
    if answer.verified is False:
        reasons.append("failed its self-check" + (" (revised once)" if answer.revised else ""))
    if verdict is not None and verdict.hallucinated:
        reasons.append(f"unsupported claims: {'; '.join(verdict.unsupported_claims)[:200] or 'grounding too low'}")
    if verdict is not None and verdict.judge_error is not None:
        reasons.append("the judge could not score it")
    if answer.guardrails:
        reasons.append(f"guardrails: {'; '.join(answer.guardrails)}")
    if verdict is not None and verdict.flaky:
        reasons.append(f"the judge's votes split ({verdict.agreement:.0%} agree)")
    flagged = sorted({rule for text in [answer.answer, *(c.text for c in answer.evidence(result.retrieved))]
                      for rule in detect_injection(text)})
    if flagged:
        reasons.append(f"flagged content: {', '.join(flagged)}")
    return reasons


def review_queue(results: list[QuestionResult], cfg: ReviewConfig,
                 said: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    """One row per answer that needs review, most reasons first; `said` adds reasons per question id (what users said
    about a served answer: a thumbs down, a correction)."""
    rows = [{"question_id": r.question.id, "question": r.question.question, "answer": r.answer.answer,
             "reference": r.question.reference, "confidence": r.answer.confidence, "strategy": r.answer.strategy,
             "citations": ",".join(r.answer.citations), "reasons": reasons}
            for r in results if (reasons := [*(said or {}).get(r.question.id, []), *review_reasons(r, cfg)])]
    return sorted(rows, key=lambda row: (-len(row["reasons"]), row["confidence"]))
