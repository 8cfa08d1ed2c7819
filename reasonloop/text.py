"""Text handling shared by the reasoner and the judges: SQuAD-style answer normalization and sentence splitting."""

from __future__ import annotations

import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and articles, squeeze whitespace (the official SQuAD normalization)."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def split_sentences(text: str) -> list[str]:
    """Sentence split on end punctuation followed by a capital or digit; keeps abbreviations mostly intact."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]
