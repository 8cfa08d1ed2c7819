"""Claim checks an embedding similarity cannot make. A summary sentence with one entity, number, word or negation
changed is still the nearest neighbour of the sentence it came from (SummEdits' edits are exactly these), so
the heuristic judge also asks of every claim:

- numbers: every number in the claim (digits, or a number word such as "three") occurs in the evidence;
- time units: every "day", "month", "year"... in the claim occurs in the evidence ("$5 a month" -> "a year");
- entities: every capitalized name inside the claim (not its first word) occurs in the evidence;
- antonyms: no claim word is absent from the evidence while its opposite is present ("cheap" where the evidence
  says "expensive"), from a general-English list or a negating prefix ("unhappy"/"happy", "misinforms"/"informs");
- negation: a negated claim ("not", "never", "fails to"...) has a negated sentence among its closest evidence
  sentences, or one anywhere in the evidence that names what the claim denies ("does not discuss" needs a negated
  sentence with "discuss", not just any negated sentence sharing a word: a transcript has plenty); and a claim
  whose closest evidence sentence negates words the claim repeats carries the negation too. "No matter" negates
  nothing;
- restriction: a claim saying "only", "solely", "except"... has such a word among its closest evidence sentences;
- error: a claim saying someone erred ("misinforms", "falsely", "wrongly"...) has such a word in the evidence.

Plain novelty is no signal: a faithful paraphrase brings as many words the evidence lacks as an edit does, so
every check needs a specific reason (a number, a name, an opposite, a lost or added negation).
"""

from __future__ import annotations

import re
from functools import lru_cache

from reasonloop.text import split_sentences

NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*%?")
WORD = re.compile(r"[^\W\d_][\w'-]*")  # letters of any script: "Norðmaðr" is one word, not "Nor"
NEGATION = re.compile(r"\b(not|no|never|none|nobody|nothing|neither|nor|without|cannot|\w+n't|unable|"
                      r"fail(?:s|ed|ing)?|refus(?:e|es|ed|ing)|lack(?:s|ed|ing)?)\b", re.I)
NOT_A_NEGATION = re.compile(r"no matter\b", re.I)  # a negation word that negates nothing
ERROR = re.compile(r"\b(mis(?:inform|lead|led|stat|represent|quot)\w*|falsely|wrong(?:ly)?|incorrect(?:ly)?|"
                   r"mistaken(?:ly)?|erroneous(?:ly)?|inaccurate(?:ly)?)\b", re.I)
RESTRICTION = re.compile(r"\b(only|solely|exclusively|merely|except)\b", re.I)
COMMON = frozenset("a an the of in on at to for by with from and or is are was were be been it its as into than then "
                   "that this these those he she they we you i his her their our your who which what when where why "
                   "how also but if so".split())
FUNCTION = COMMON | frozenset("about after all am any because before being both can could did do does had has have him "
                              "just may me might more most must my one other out over own same shall should some "
                              "such them there through too under us very will would".split())
NUMBER_WORDS = {w: str(n) for n, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve "
                                                "thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty"
                                                .split()) if w != "one"} | {  # "one" is mostly a pronoun
    "thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80", "ninety": "90",
    "dozen": "12"}
NUMBER_WORD = re.compile(rf"\b({'|'.join(NUMBER_WORDS)})\b(?!\s+(?:hundred|thousand|million|billion))", re.I)
NEGATING_PREFIXES = ("un", "in", "im", "il", "ir", "dis", "non", "non-", "mis")
SCOPE = 3  # content words after a negation cue that say what is negated
# general-English opposites, written from the language, not drawn from any evaluation set
ANTONYM_PAIRS = """
absent:present accept:reject accept:refuse active:passive add:remove advanced:basic advantage:drawback agree:refuse
allow:forbid allow:prevent always:never always:rarely ancient:modern approve:reject arrive:depart attack:defend
begin:end best:worst better:worse big:small large:small huge:tiny larger:smaller largest:smallest bottom:top buy:sell
cheap:expensive cheaper:costlier clean:dirty close:open closed:open cold:hot cool:warm complex:simple
complicated:simple simple:sophisticated compulsory:optional mandatory:optional confirm:deny continue:stop
correct:wrong dark:light dead:alive deep:shallow dense:sparse difficult:easy hard:easy harder:easier early:late
earlier:later empty:full enter:exit explicit:implicit external:internal fail:succeed failure:success false:true
far:near fast:slow faster:slower quick:slow few:many first:last forget:remember gain:lose gain:loss win:lose win:loss
general:specific generic:specific give:take good:bad happy:sad heavy:light high:low higher:lower highest:lowest
include:exclude increase:decrease increase:reduce increase:drop increasing:decreasing inside:outside input:output
junior:senior young:old younger:older elderly:young new:old least:most less:more fewer:more long:short
longer:shorter loud:quiet major:minor majority:minority maximum:minimum maximize:minimize narrow:wide narrow:broad
negative:positive offline:online optimistic:pessimistic past:future permanent:temporary poor:rich private:public
strong:weak stronger:weaker strength:weakness raise:lower rise:fall safe:dangerous start:finish start:stop
strict:lenient tight:loose upper:lower wet:dry love:hate like:hate support:oppose expand:shrink global:local
static:dynamic discrete:continuous manual:automatic artificial:natural synthetic:real often:rarely often:seldom
frequently:rarely many:few much:little most:few improve:worsen improve:degrade benefit:harm beneficial:harmful
whole:partial full:partial complete:partial specific:vague clear:vague certain:doubtful accurate:wrong
everyone:nobody everything:nothing all:none
comprehensive:basic personalized:generic customized:generic tailored:generic good:poor excellent:poor flexible:rigid
quick:time-consuming easy:time-consuming outperform:underperform overestimate:underestimate ascending:descending
male:female men:women husband:wife father:mother son:daughter boy:girl north:south east:west inbound:outbound
incoming:outgoing summer:winter
"""


def stem(word: str) -> str:
    """Lemma-ish key: lowercase, one inflection off ("increases", "increased", "increasing" -> "increas"), so a
    claim and its evidence match across tense and number without a lexicon."""
    word = word.lower().removesuffix("'s")
    for suffix, replacement in (("ies", "y"), ("ied", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", ""),
                                ("ly", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            word = word[: -len(suffix)] + replacement
            break
    return word.removesuffix("e") if len(word) > 4 else word


def stems(text: str) -> set[str]:
    return {stem(w) for w in WORD.findall(text)}


def antonym_table(pairs: str) -> dict[str, frozenset[str]]:
    """Both directions of every "a:b" pair, by stem."""
    table: dict[str, set[str]] = {}
    for pair in pairs.split():
        a, b = (stem(w) for w in pair.split(":"))
        table.setdefault(a, set()).add(b)
        table.setdefault(b, set()).add(a)
    return {word: frozenset(opposites) for word, opposites in table.items()}


ANTONYMS = antonym_table(ANTONYM_PAIRS)
TIME_UNITS = frozenset(stem(w) for w in "minute hour day week month year decade century".split())


def numbers(text: str) -> set[str]:
    """Digits as written (no thousands separators, no %), number words as digits: "three" and "3" are one number."""
    return ({n.rstrip("%").replace(",", "") for n in NUMBER.findall(text)}
            | {NUMBER_WORDS[w.lower()] for w in NUMBER_WORD.findall(text)})


def names(sentence: str) -> list[str]:
    """Capitalized words after the first one (the first is capitalized anyway)."""
    words = WORD.findall(sentence)
    return [w for w in words[1:] if w[0].isupper() and w.lower() not in COMMON]


def opposites(word: str) -> frozenset[str]:
    """Stems that say the opposite of `word`: listed antonyms, and the word with a negating prefix added or
    removed (bases of five letters or more: a shorter one is a prefix by chance, as "dis" + "play")."""
    key = stem(word)
    prefixed = {p + key for p in NEGATING_PREFIXES if len(key) >= 5}
    unprefixed = {key[len(p):] for p in NEGATING_PREFIXES if key.startswith(p) and len(key) - len(p) >= 5}
    return ANTONYMS.get(key, frozenset()) | prefixed | unprefixed


def antonym_problems(words: list[str], evidence: str, evidence_stems: frozenset[str]) -> list[str]:
    """Claim words the evidence lacks while it has their opposite: a swapped word, not a synonym."""
    problems = []
    for word in words:
        said = opposites(word) & evidence_stems if stem(word) not in evidence_stems else frozenset()
        if said:
            opposite = next(w for w in WORD.findall(evidence) if stem(w) in said)
            problems.append(f"'{word}' where the evidence says '{opposite}'")
    return problems


def scope(words: list[str], cue: int) -> list[str]:
    """What the negation cue at `cue` negates: the next SCOPE content words."""
    return [w for w in words[cue + 1:] if w.lower() not in FUNCTION and not NEGATION.fullmatch(w)][:SCOPE]


def negation_cues(words: list[str]) -> list[int]:
    """Positions of the negation cues in `words` ("no matter" is none)."""
    return [i for i, w in enumerate(words) if NEGATION.fullmatch(w)
            and not NOT_A_NEGATION.match(" ".join(words[i:i + 2]))]


def denied(scoped: list[str]) -> str:
    """The key of what a negation denies: the first word of its scope that is not an adverb ("not currently
    insured" denies "insured")."""
    return next((stem(w)[:5] for w in scoped if not w.lower().endswith("ly")), stem(scoped[0])[:5])


def keys(words: list[str]) -> set[str]:
    """Loose word keys for matching a negation's scope: "insured" and "insurance" share their first five letters."""
    return {stem(w)[:5] for w in words}


@lru_cache(maxsize=64)
def evidence_index(evidence: str) -> tuple[frozenset[str], tuple[frozenset[str], ...]]:
    """Stems of the evidence, and the scope keys of each negated evidence sentence (cached: every claim of an
    answer is checked against the same evidence)."""
    negated = tuple(frozenset(keys(WORD.findall(s))) for s in split_sentences(evidence) if NEGATION.search(s))
    return frozenset(stems(evidence)), negated


def negation_problems(claim: str, closest: list[str], negated_evidence: tuple[frozenset[str], ...]) -> list[str]:
    """A negation the evidence does not carry, added ("does not offer": no closest sentence is negated and no negated
    evidence sentence has "offer") or dropped (the closest sentence says "did not score", the claim repeats "score"
    without a negation)."""
    words = WORD.findall(claim)
    cues = negation_cues(words)
    if not cues:
        top = WORD.findall(closest[0]) if closest else []
        dropped = [[top[i], *scope(top, i)] for i in negation_cues(top)]
        return [f"the closest evidence says '{' '.join(d)}', the claim drops the negation" for d in dropped
                if len(d) > 1 and keys(d[1:]) <= keys(words)][:1]
    if any(negation_cues(WORD.findall(s)) for s in closest):
        return []
    added = [[words[i], *scope(words, i)] for i in cues]
    return [f"'{' '.join(a)}' is negated, but no evidence sentence negates it" for a in added
            if len(a) > 1 and not any(denied(a[1:]) in sentence for sentence in negated_evidence)][:1]


def claim_problems(claim: str, closest: list[str], evidence: str) -> list[str]:
    """Why `claim` is not supported beyond similarity: numbers, time units or names absent from `evidence`, a word
    whose opposite the evidence says instead, a negation or restriction the evidence does not bear out, or an error
    it does not report. Empty: no such problem."""
    evidence_stems, negated_evidence = evidence_index(evidence)
    problems = [f"number {n} is not in the evidence" for n in sorted(numbers(claim) - numbers(evidence))]
    lowered = evidence.lower()
    problems += [f"'{name}' is not in the evidence" for name in dict.fromkeys(names(claim))
                 if name.lower() not in lowered]
    words = list(dict.fromkeys(WORD.findall(claim)))
    problems += [f"'{w}' is not in the evidence" for w in words
                 if stem(w) in TIME_UNITS and stem(w) not in evidence_stems]
    swapped = antonym_problems(words, evidence, evidence_stems)
    problems += swapped
    problems += negation_problems(claim, closest, negated_evidence)
    error = ERROR.search(claim)
    if error and not swapped and not ERROR.search(evidence):  # "misinformed" where it says "informed" is named once
        problems.append(f"'{error.group()}' says someone erred, but the evidence does not")
    if RESTRICTION.search(claim) and not any(RESTRICTION.search(s) for s in closest):
        problems.append("restricted ('only', 'except'...), but the closest evidence is not")
    return problems
