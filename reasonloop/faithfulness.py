"""Claim checks an embedding similarity cannot make. A summary sentence with one entity, number or negation
changed is still the nearest neighbour of the sentence it came from (SummEdits' edits are exactly these), so
the heuristic judge also asks of every claim:

- numbers: every number in the claim occurs in the evidence;
- entities: every capitalized name inside the claim (not its first word) occurs in the evidence;
- negation: a negated claim has a negated sentence among its closest evidence sentences.
"""

from __future__ import annotations

import re

NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*%?")
WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
NEGATION = re.compile(r"\b(not|no|never|none|nobody|nothing|neither|nor|without|cannot|\w+n't)\b", re.I)
COMMON = frozenset("a an the of in on at to for by with from and or is are was were be been it its as into than then "
                   "that this these those he she they we you i his her their our your who which what when where why "
                   "how also but if so".split())


def numbers(text: str) -> set[str]:
    return {n.rstrip("%").replace(",", "") for n in NUMBER.findall(text)}


def names(sentence: str) -> list[str]:
    """Capitalized words after the first one (the first is capitalized anyway)."""
    words = WORD.findall(sentence)
    return [w for w in words[1:] if w[0].isupper() and w.lower() not in COMMON]


def claim_problems(claim: str, closest: list[str], evidence: str) -> list[str]:
    """Why `claim` is not supported beyond similarity: numbers or names absent from `evidence`, or a negation none
    of its `closest` evidence sentences carries. Empty: no such problem."""
    problems = [f"number {n} is not in the evidence" for n in sorted(numbers(claim) - numbers(evidence))]
    lowered = evidence.lower()
    problems += [f"'{name}' is not in the evidence" for name in dict.fromkeys(names(claim))
                 if name.lower() not in lowered]
    if NEGATION.search(claim) and not any(NEGATION.search(s) for s in closest):
        problems.append("negated, but the closest evidence is not")
    return problems
