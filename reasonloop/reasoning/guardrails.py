"""Input and output guardrails around the reasoner.

- Input: a question that tries to override the system (override, role hijacking, chat markup, exfiltration) is
  refused without calling the model. The broader rules (task requests, "your answer") are not applied to
  questions: questions are requests by nature.
- Context: retrieved sentences that read as instructions to the model (any injection rule) are removed before the
  prompt is rendered; the rest of the chunk still answers.
- Output: e-mail addresses, phone numbers, card numbers (Luhn-checked) and US social security numbers in an
  answer are redacted.
"""

from __future__ import annotations

import re

from reasonloop.retrieval.injection import detect_injection
from reasonloop.schemas import RetrievedChunk
from reasonloop.text import split_sentences

QUESTION_RULES = frozenset({"override", "role_hijack", "chat_markup", "exfiltration"})
REFUSAL = "I can't follow instructions embedded in a question; please ask the question alone."

PII: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"),
    "card": re.compile(r"\b(?:\d[ -]?){13,19}\b"),
    "ssn": re.compile(r"\b\d{3}-\d{2}-\d{4}\b"),
    "phone": re.compile(r"(?<![\w+])(?:\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}"  # +44 20 7946 0958
                        r"|(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]\d{4})(?!\w)"),  # (555) 123-4567, 555.123.4567
}


def screen_question(question: str) -> list[str]:
    """The override-type injection rules a question trips (empty: let it through)."""
    return [rule for rule in detect_injection(question) if rule in QUESTION_RULES]


def strip_injected(context: list[RetrievedChunk]) -> tuple[list[RetrievedChunk], int]:
    """The context without sentences that read as instructions to the model, and how many were removed; a chunk
    left empty is dropped."""
    kept, removed = [], 0
    for chunk in context:
        sentences = split_sentences(chunk.text)
        clean = [s for s in sentences if not detect_injection(s)]
        removed += len(sentences) - len(clean)
        if len(clean) == len(sentences):
            kept.append(chunk)
        elif clean:
            kept.append(chunk.model_copy(update={"text": " ".join(clean)}))
    return kept, removed


def luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def redact_pii(text: str) -> tuple[str, list[str]]:
    """`text` with personal data replaced by [kind], and the kinds found."""
    found: list[str] = []

    def replace(kind: str) -> object:
        def sub(match: re.Match[str]) -> str:
            if kind == "card" and not luhn(re.sub(r"\D", "", match.group(0))):
                return match.group(0)
            found.append(kind)
            return f"[{kind}]"
        return sub

    for kind, pattern in PII.items():
        text = pattern.sub(replace(kind), text)  # type: ignore[arg-type]
    return text, sorted(set(found))
