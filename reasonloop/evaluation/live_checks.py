"""Checks on live answers, which have no reference: what users said about them (ratings, corrections), and safety
flags on what was served (injection-like text in the answer or its context, personal data the output guardrail did
not catch, refusals). Per arm, so a live canary's two arms compare on the same figures."""

from __future__ import annotations

from collections import Counter

from reasonloop.reasoning.guardrails import REFUSAL, redact_pii
from reasonloop.retrieval.injection import detect_injection
from reasonloop.schemas import LiveRecord

FLAGS = ("answer_injection", "context_injection", "personal_data", "refused", "failed")


def flags_of(record: LiveRecord) -> list[str]:
    answer = record.result.answer
    flags = []
    if detect_injection(answer.answer):
        flags.append("answer_injection")
    if any(detect_injection(c.text) for c in record.result.retrieved):
        flags.append("context_injection")
    if redact_pii(answer.answer)[1]:
        flags.append("personal_data")
    if answer.answer.strip() == REFUSAL or any(g.startswith("input: refused") for g in answer.guardrails):
        flags.append("refused")
    if answer.error is not None:
        flags.append("failed")
    return flags


def what_users_said(record: LiveRecord) -> list[str]:
    """Review reasons from users: a thumbs down, a correction."""
    said = ["user: thumbs down" + (f" ({record.comment[:200]})" if record.comment else "")] \
        if record.rating is False else []
    return said + ([f"user: corrected to {record.correction[:200]!r}"] if record.correction else [])


def live_metrics(records: list[LiveRecord]) -> dict[str, float]:
    """Feedback and safety figures of a window: `n_traces`, `n_rated`, `thumbs_up_rate`, `n_corrected`,
    `unsafe_rate` (answer injection or personal data) and `flag.<name>` counts."""
    rated = [r.rating for r in records if r.rating is not None]
    flags = Counter(flag for r in records for flag in flags_of(r))
    unsafe = sum(1 for r in records if {"answer_injection", "personal_data"} & set(flags_of(r)))
    return {"n_traces": float(len(records)), "n_rated": float(len(rated)), "n_corrected":
            float(sum(r.correction is not None for r in records)),
            **({"thumbs_up_rate": sum(rated) / len(rated)} if rated else {}),
            **({"unsafe_rate": unsafe / len(records)} if records else {}),
            **{f"flag.{name}": float(flags[name]) for name in FLAGS}}
