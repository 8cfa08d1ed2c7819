"""Reasoning quality of an answer's chain of thought, scored without a model: the offline counterpart of the rubric
the LLM judge is asked (logical consistency, completeness, clarity; each in [0, 1]; a verdict's reasoning quality
is their mean).

The chain is the one the reasoning prompts ask for (problem -> context -> steps -> verification -> answer, citing
chunk ids), so the checks are structural and lexical:

- completeness: the share of those parts present (citations only count where there was context to cite);
- logical consistency: the cited ids are among the chunks the answer could read, and the answer's content words
  occur in what it cites (in all its evidence when it cites nothing) - an answer its own sources do not bear out
  does not follow from its reasoning;
- clarity: short sentences (at most `CLEAR_WORDS` words on average score 1) without repeated steps.

An answer without any reasoning (the direct strategy) has no reasoning to score: None.
"""

from __future__ import annotations

from pydantic import Field

from reasonloop.schemas import AnswerRecord, Record, RetrievedChunk
from reasonloop.text import normalize_answer, split_sentences

CLEAR_WORDS = 30
STOPWORDS = frozenset("a an the of in on at to for by with from and or is are was were be been being it its as into "
                      "than then that this these those he she they we you i his her their our your who which what "
                      "when where why how also but if so not no do does did has have had".split())


class ReasoningQuality(Record):
    consistency: float = Field(ge=0.0, le=1.0, description="logical consistency")
    completeness: float = Field(ge=0.0, le=1.0)
    clarity: float = Field(ge=0.0, le=1.0)


def content_words(text: str) -> set[str]:
    return {w for w in normalize_answer(text).split() if w not in STOPWORDS}


def score_reasoning_quality(answer: AnswerRecord, evidence: list[RetrievedChunk]) -> ReasoningQuality | None:
    """The three scores of `answer`'s reasoning over the chunks it could read; None without reasoning."""
    chain = answer.reasoning
    if not (chain.problem or chain.steps or chain.verification):
        return None
    parts = [chain.problem, chain.context, chain.steps, chain.verification, answer.answer]
    if evidence:
        parts.append(answer.citations)
    completeness = sum(bool(p) for p in parts) / len(parts)

    known = {c.chunk_id: c.text for c in evidence}
    cited = [known[c] for c in answer.citations if c in known]
    valid = len(cited) / len(answer.citations) if answer.citations else 1.0
    claimed = content_words(answer.answer)
    source = content_words(" ".join(cited or list(known.values())))
    covered = len(claimed & source) / len(claimed) if claimed else 1.0
    consistency = (valid + covered) / 2

    text = [s for part in (chain.problem, chain.context, *chain.steps, chain.verification, answer.answer)
            for s in split_sentences(part)]
    words = sum(len(s.split()) for s in text) / len(text) if text else 0.0
    brevity = min(1.0, CLEAR_WORDS / words) if words else 1.0
    steps = [normalize_answer(s) for s in chain.steps]
    distinct = len(set(steps)) / len(steps) if steps else 1.0
    return ReasoningQuality(consistency=consistency, completeness=completeness, clarity=brevity * distinct)

