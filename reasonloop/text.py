"""Text handling shared across layers: SQuAD-style answer normalization, sentence splitting, durations (`24h`)."""

from __future__ import annotations

import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
DURATION = r"^(\d+(?:\.\d+)?)\s*([smhdw])$"  # e.g. 24h, 90m, 7d: the pattern of every duration setting
_DURATION = re.compile(DURATION)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and articles, squeeze whitespace (the official SQuAD normalization)."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def split_sentences(text: str) -> list[str]:
    """Sentence split on end punctuation followed by a capital or digit; keeps abbreviations mostly intact."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def parse_duration(text: str) -> float:
    """`24h`, `90m`, `7d`, `1w`, `3600s` as seconds; a ValueError naming the accepted forms otherwise."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"'{text}' is not a duration: give a number and a unit, e.g. 24h, 90m, 7d, 1w")
    return float(match[1]) * _SECONDS[match[2]]
