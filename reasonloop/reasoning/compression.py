"""Prompt compression: a strategy's context within its token budget. Tokens cost money on every call a strategy
makes (self-consistency pays for its context n times), so the context is trimmed before the prompt is rendered:
duplicate chunks and chunks far below the top one go first, then the sentences that share the fewest (rarest)
terms with the question."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable

from reasonloop.schemas import RetrievedChunk
from reasonloop.text import normalize_answer, split_sentences

WORD = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset("a an the of in on at to for by with from and or is are was were be been what which who whom "
                      "whose when where why how did do does that this these those it its as into than then".split())


def terms(text: str) -> set[str]:
    return {w for w in WORD.findall(text.lower()) if w not in STOPWORDS}


def compress_context(question: str, context: list[RetrievedChunk], budget: int | None, drop_below_top: float,
                     count_tokens: Callable[[str], int]) -> list[RetrievedChunk]:
    """The context within `budget` tokens (None: unchanged). Chunks keep their ids, scores and order; a chunk
    keeps its best sentences in their original order and is dropped when none is kept. The best sentence overall
    is always kept, even alone over budget, so a prompt never loses all its evidence."""
    if budget is None or not context:
        return context
    unique = list({normalize_answer(c.text): c for c in reversed(context)}.values())[::-1]  # first of each text
    cosines = [c.dense_score for c in unique if c.dense_score is not None]
    top = max(cosines) if cosines else None
    kept = [c for c in unique if top is None or c.dense_score is None or c.dense_score >= top - drop_below_top]
    if sum(count_tokens(c.text) for c in kept) <= budget:
        return kept
    sentences = [(i, j, s) for i, c in enumerate(kept) for j, s in enumerate(split_sentences(c.text))]
    document_frequency = Counter(t for _, _, s in sentences for t in terms(s))
    wanted = terms(question)

    def score(item: tuple[int, int, str]) -> float:
        i, _, sentence = item
        overlap = sum(math.log(1 + len(sentences) / document_frequency[t]) for t in wanted & terms(sentence))
        return overlap + 0.01 / (1 + i)  # ties: the better-ranked chunk

    chosen: set[tuple[int, int]] = set()
    used = 0
    for i, j, sentence in sorted(sentences, key=score, reverse=True):
        cost = count_tokens(sentence)
        if chosen and used + cost > budget:
            continue
        chosen.add((i, j))
        used += cost
    texts: dict[int, list[str]] = {}
    for i, j, sentence in sentences:
        if (i, j) in chosen:
            texts.setdefault(i, []).append(sentence)
    return [c.model_copy(update={"text": " ".join(texts[i])}) for i, c in enumerate(kept) if i in texts]
