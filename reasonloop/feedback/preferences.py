"""Preference pairs for DPO: built from feedback (corrections, thumbs) or judge-scored samples (RLAIF), cleaned by
a hygiene pipeline that counts what every step removed, split by a hash of the prompt, exported in TRL's format.

    build: pairs_from_corrections | pairs_from_thumbs | pairs_from_scores  ->  list[PreferencePair]
    clean: redact PII -> length limits -> chosen != rejected -> exact duplicate prompts -> eval leakage (exact, then
           near by cosine) -> near-duplicate prompts -> balance caps per source     (clean_pairs, FilterReport)
    split: split_pairs (sha256 of seed + normalised prompt: a pair's split never changes when others are added)
    export: exports.py

Everything is a pure function; the embedder is passed in.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, Protocol

import numpy as np
from pydantic import Field

from reasonloop.feedback.config import PairSource, PreferencesConfig
from reasonloop.feedback.records import FeedbackRecord
from reasonloop.reasoning import guardrails
from reasonloop.redact import redact
from reasonloop.schemas import MetadataValue, Record

Source = PairSource
SOURCES: tuple[Source, ...] = ("correction", "thumbs", "rlaif")  # also the priority when prompts collide
FILTER_STEPS = ("too_long", "chosen_equals_rejected", "exact_duplicate_prompt", "eval_leak_exact", "eval_leak_near",
                "near_duplicate_prompt", "balance_cap")


class TextEmbedder(Protocol):
    def embed(self, texts: list[str]) -> np.ndarray: ...


class PreferencePair(Record):
    prompt: str
    chosen: str
    rejected: str
    source: Source
    question_id: str
    source_run_ids: list[str] = Field(default_factory=list, description="runs that produced the answers (lineage)")
    source_trace_ids: list[str] = Field(default_factory=list, description="served requests' MLflow traces that "
                                        "produced the answers (lineage of live feedback)")
    margin: float | None = Field(default=None, description="how much better chosen is, on the source's own scale")
    meta: dict[str, MetadataValue] = Field(default_factory=dict)


class LeakedPrompt(Record):
    prompt: str
    eval_set: str
    eval_question: str
    kind: Literal["exact", "near"]
    cosine: float


class FilterReport(Record):
    """What each step did: `removed` maps every step (in pipeline order) to the pairs it dropped."""

    n_in: int
    n_out: int
    removed: dict[str, int]
    redacted: int = Field(description="pairs whose prompt, chosen or rejected had PII or secrets replaced")
    leaked: list[LeakedPrompt] = Field(default_factory=list)
    per_source_in: dict[str, int] = Field(default_factory=dict)
    per_source_out: dict[str, int] = Field(default_factory=dict)


class PreferenceDataset(Record):
    train: list[PreferencePair]
    test: list[PreferencePair]
    report: FilterReport
    config: PreferencesConfig
    unpaired: list[dict[str, MetadataValue]] = Field(default_factory=list, description="KTO rows (prompt, "
                                                     "completion, label), when `kto` is on")
    unpaired_leaked: int = Field(default=0, description="KTO rows dropped by the leakage guard or the length limits")


# ---------------------------------------------------------------- text helpers

def normalize_text(text: str) -> str:
    """The comparison form: NFKC, case-folded, whitespace collapsed, outer punctuation stripped."""
    folded = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return folded.strip(" .,;:!?\"'()[]")


def redact_pii(text: str) -> str:
    """Secrets (`redact`: keys, bearer tokens, URL passwords) and personal data (the output guardrail's: e-mail
    addresses, phone, card and social security numbers)."""
    return guardrails.redact_pii(redact(text))[0]


def _hash_unit(seed: int, text: str) -> float:
    """A uniform number in [0, 1) fixed by the seed and the normalised text."""
    digest = hashlib.sha256(f"{seed}\x00{normalize_text(text)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def priority(pair: PreferencePair) -> tuple[object, ...]:
    """The order in which colliding pairs are kept: corrections first, then larger margins, then stable text."""
    return (SOURCES.index(pair.source), -(pair.margin or 0.0), pair.question_id, pair.prompt, pair.chosen,
            pair.rejected)


# ---------------------------------------------------------------- builders

def pairs_from_corrections(records: Iterable[FeedbackRecord]) -> list[PreferencePair]:
    """One pair per record with a corrected answer: chosen = the correction, rejected = the original answer."""
    pairs = [PreferencePair(prompt=r.question, chosen=r.corrected_answer, rejected=r.answer, source="correction",
                            question_id=r.question_id, source_run_ids=[r.source_run_id] if r.source_run_id else [],
                            source_trace_ids=[r.source_trace_id] if r.source_trace_id else [],
                            meta={"rating": r.rating, **({"segment": r.segment} if r.segment else {})})
             for r in records if r.corrected_answer is not None]
    return sorted(pairs, key=priority)


def pairs_from_thumbs(records: Iterable[FeedbackRecord]) -> list[PreferencePair]:
    """Pairs of a liked and a disliked answer to the same prompt (normalised question text).

    Votes on the same (normalised) answer are pooled into a mean score (up +1, down -1, 1..5 -> -1..+1); an answer
    is liked with a mean above 0 (so at least one up or >= 4) and disliked below 0 (at least one down or <= 2).
    Liked answers, best first, are zipped with disliked ones, worst first (ties: earliest vote, then text), so each
    answer is used once and the result does not depend on the order of the records. margin = the score gap."""
    by_prompt: dict[str, dict[str, list[FeedbackRecord]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        by_prompt[normalize_text(r.question)][normalize_text(r.answer)].append(r)
    pairs: list[PreferencePair] = []
    for prompt_key in sorted(by_prompt):
        answers = []
        for votes in by_prompt[prompt_key].values():
            votes.sort(key=lambda r: (r.timestamp, r.answer, r.question_id))
            answers.append((sum(v.score for v in votes) / len(votes), votes))
        liked = sorted((a for a in answers if a[0] > 0), key=lambda a: (-a[0], a[1][0].timestamp, a[1][0].answer))
        disliked = sorted((a for a in answers if a[0] < 0), key=lambda a: (a[0], a[1][0].timestamp, a[1][0].answer))
        for (good, good_votes), (bad, bad_votes) in zip(liked, disliked, strict=False):
            first = min(good_votes[0], bad_votes[0], key=lambda r: (r.timestamp, r.question_id))
            runs = sorted({v.source_run_id for v in good_votes + bad_votes if v.source_run_id})
            traces = sorted({v.source_trace_id for v in good_votes + bad_votes if v.source_trace_id})
            pairs.append(PreferencePair(prompt=first.question, chosen=good_votes[0].answer,
                                        rejected=bad_votes[0].answer, source="thumbs", question_id=first.question_id,
                                        source_run_ids=runs, source_trace_ids=traces, margin=round(good - bad, 6),
                                        meta={"votes_chosen": len(good_votes), "votes_rejected": len(bad_votes)}))
    return pairs


def pairs_from_scores(prompt_answers_scores: Mapping[str, Sequence[tuple[str, float]]], min_margin: float,
                      question_ids: Mapping[str, str] | None = None,
                      source_run_ids: Sequence[str] = ()) -> list[PreferencePair]:
    """RLAIF: for each prompt, its sampled answers with a judge score; chosen = the best, rejected = the worst,
    kept when best - worst >= `min_margin` and the two differ after normalisation. Ties are broken by the answer
    text, prompts are visited in sorted order. `question_ids` maps a prompt to its id (default: the prompt's
    sha256 prefix); `source_run_ids` records the sampling and judging runs."""
    pairs: list[PreferencePair] = []
    for prompt in sorted(prompt_answers_scores):
        samples = [(a, float(s)) for a, s in prompt_answers_scores[prompt] if a.strip()]
        if len(samples) < 2:
            continue
        best = min(samples, key=lambda s: (-s[1], s[0]))
        worst = min(samples, key=lambda s: (s[1], s[0]))
        margin = best[1] - worst[1]
        if margin < min_margin - 1e-9 or normalize_text(best[0]) == normalize_text(worst[0]):
            continue
        qid = (question_ids or {}).get(prompt) or hashlib.sha256(prompt.encode()).hexdigest()[:16]
        pairs.append(PreferencePair(prompt=prompt, chosen=best[0], rejected=worst[0], source="rlaif", question_id=qid,
                                    source_run_ids=sorted(set(source_run_ids)), margin=round(margin, 6),
                                    meta={"n_samples": len(samples)}))
    return pairs


def vote_entropy(samples: Sequence[str]) -> float:
    """Entropy (bits) of the normalised answers of one question's samples: 0 when they all agree."""
    counts = np.array(list(Counter(normalize_text(s) for s in samples).values()), dtype=float)
    shares = counts / counts.sum() if counts.size else counts
    return float(-(shares * np.log2(shares)).sum()) if counts.size else 0.0


# ---------------------------------------------------------------- hygiene steps (each: pairs -> kept, removed)

def redact_pairs(pairs: Sequence[PreferencePair]) -> tuple[list[PreferencePair], int]:
    """PII and secrets replaced in prompt, chosen and rejected; returns the pairs and how many changed."""
    out, changed = [], 0
    for p in pairs:
        update = {k: redact_pii(getattr(p, k)) for k in ("prompt", "chosen", "rejected")}
        changed += any(update[k] != getattr(p, k) for k in update)
        out.append(p.model_copy(update=update))
    return out, changed


def drop_too_long(pairs: Sequence[PreferencePair], max_prompt_chars: int,
                  max_response_chars: int) -> list[PreferencePair]:
    return [p for p in pairs if len(p.prompt) <= max_prompt_chars
            and max(len(p.chosen), len(p.rejected)) <= max_response_chars]


def drop_identical(pairs: Sequence[PreferencePair]) -> list[PreferencePair]:
    """Pairs whose chosen and rejected are the same text after normalisation teach nothing."""
    return [p for p in pairs if normalize_text(p.chosen) != normalize_text(p.rejected)]


def drop_duplicate_prompts(pairs: Sequence[PreferencePair]) -> list[PreferencePair]:
    """One pair per normalised prompt: the first in `priority` order."""
    seen: set[str] = set()
    kept = []
    for p in sorted(pairs, key=priority):
        key = normalize_text(p.prompt)
        if key not in seen:
            seen.add(key)
            kept.append(p)
    return kept


def find_leaks(prompts: Sequence[str], prompt_vectors: np.ndarray, eval_questions: Mapping[str, Sequence[str]],
               embedder: TextEmbedder, threshold: float) -> dict[int, LeakedPrompt]:
    """Prompt index -> the eval question it leaks: equal after normalisation, else cosine >= `threshold`."""
    names = [(name, q) for name in sorted(eval_questions) for q in eval_questions[name]]
    if not names or not prompts:
        return {}
    exact = {}
    for name, question in names:
        exact.setdefault(normalize_text(question), (name, question))
    leaks: dict[int, LeakedPrompt] = {}
    for i, prompt in enumerate(prompts):
        if (hit := exact.get(normalize_text(prompt))) is not None:
            leaks[i] = LeakedPrompt(prompt=prompt, eval_set=hit[0], eval_question=hit[1], kind="exact", cosine=1.0)
    rest = [i for i in range(len(prompts)) if i not in leaks]
    if rest:
        sims = prompt_vectors[rest] @ embedder.embed([q for _, q in names]).T
        best = sims.argmax(axis=1)
        for row, i in enumerate(rest):
            cosine = float(sims[row, best[row]])
            if cosine >= threshold:
                name, question = names[best[row]]
                leaks[i] = LeakedPrompt(prompt=prompts[i], eval_set=name, eval_question=question, kind="near",
                                        cosine=round(cosine, 4))
    return leaks


def near_duplicate_mask(vectors: np.ndarray, threshold: float, block: int = 512) -> np.ndarray:
    """Greedy in row order: a row is kept unless its cosine to an already kept row is >= `threshold`."""
    keep = np.zeros(len(vectors), dtype=bool)
    kept_vectors = np.zeros((0, vectors.shape[1] if vectors.ndim == 2 else 0), dtype=np.float32)
    for start in range(0, len(vectors), block):
        chunk = vectors[start:start + block]
        to_kept = (chunk @ kept_vectors.T).max(axis=1) if len(kept_vectors) else np.full(len(chunk), -1.0)
        inner = chunk @ chunk.T
        chosen: list[int] = []
        for j in range(len(chunk)):
            if to_kept[j] < threshold and (not chosen or inner[j, chosen].max() < threshold):
                chosen.append(j)
                keep[start + j] = True
        kept_vectors = np.vstack([kept_vectors, chunk[chosen]])
    return keep


def cap_per_source(pairs: Sequence[PreferencePair], caps: Mapping[str, int], seed: int) -> list[PreferencePair]:
    """At most caps[source] pairs per source: the most informative first (AI-feedback pairs whose samples disagreed
    most, `vote_entropy`), then those with the smallest prompt hash, so adding pairs rarely changes which old ones
    stay. Order of the survivors is unchanged."""
    allowed: set[int] = set()
    for source in SOURCES:
        members = [i for i, p in enumerate(pairs) if p.source == source]
        members.sort(key=lambda i: (-float(pairs[i].meta.get("vote_entropy") or 0.0),  # informative first
                                    _hash_unit(seed, pairs[i].prompt), priority(pairs[i])))
        allowed.update(members[:caps[source]] if source in caps else members)
    return [p for i, p in enumerate(pairs) if i in allowed]


def clean_pairs(pairs: Sequence[PreferencePair], embedder: TextEmbedder,
                eval_questions: Mapping[str, Sequence[str]], cfg: PreferencesConfig) -> tuple[list[PreferencePair],
                                                                                          FilterReport]:
    """The hygiene pipeline (see the module docstring for the order); prompts are embedded once."""
    removed: dict[str, int] = {}
    current, redacted = redact_pairs(sorted(pairs, key=priority))

    def step(name: str, kept: list[PreferencePair]) -> None:
        nonlocal current
        removed[name] = len(current) - len(kept)
        current = kept

    step("too_long", drop_too_long(current, cfg.max_prompt_chars, cfg.max_response_chars))
    step("chosen_equals_rejected", drop_identical(current))
    step("exact_duplicate_prompt", drop_duplicate_prompts(current))
    vectors = embedder.embed([p.prompt for p in current]) if current else np.zeros((0, 0), dtype=np.float32)
    leaks = find_leaks([p.prompt for p in current], vectors, eval_questions, embedder, cfg.leak_threshold)
    before = current
    for kind in ("exact", "near"):  # leaks are keyed by position in `before`
        step(f"eval_leak_{kind}", [p for i, p in enumerate(before)
                                   if i not in leaks or (kind == "exact" and leaks[i].kind == "near")])
    vectors = vectors[[i for i in range(len(before)) if i not in leaks]]
    keep_mask = near_duplicate_mask(vectors, cfg.near_duplicate_threshold) if len(current) else np.zeros(0, bool)
    step("near_duplicate_prompt", [p for p, k in zip(current, keep_mask, strict=True) if k])
    step("balance_cap", cap_per_source(current, cfg.max_per_source, cfg.seed))
    report = FilterReport(n_in=len(pairs), n_out=len(current), removed=removed, redacted=redacted,
                          leaked=[leaks[i] for i in sorted(leaks)], per_source_in=count_by_source(pairs),
                          per_source_out=count_by_source(current))
    return current, report


def split_pairs(pairs: Sequence[PreferencePair], test_fraction: float,
                seed: int) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(train, test) by a seeded hash of the normalised prompt: a pair's side never depends on the other pairs."""
    test = [p for p in pairs if _hash_unit(seed, p.prompt) < test_fraction]
    train = [p for p in pairs if _hash_unit(seed, p.prompt) >= test_fraction]
    return train, test


def build_dataset(pairs: Sequence[PreferencePair], embedder: TextEmbedder,
                  eval_questions: Mapping[str, Sequence[str]], cfg: PreferencesConfig,
                  records: Sequence[FeedbackRecord] = ()) -> PreferenceDataset:
    """clean_pairs, then split_pairs: what `export_dataset` writes; with `cfg.kto`, also the KTO rows of the
    feedback `records`, through the same leakage guard and length limits."""
    kept, report = clean_pairs(pairs, embedder, eval_questions, cfg)
    train, test = split_pairs(kept, cfg.test_fraction, cfg.seed)
    rows = unpaired_rows(records) if cfg.kto else []
    prompts = [str(r["prompt"]) for r in rows]
    vectors = embedder.embed(prompts) if prompts else np.zeros((0, 0), dtype=np.float32)
    leaks = find_leaks(prompts, vectors, eval_questions, embedder, cfg.leak_threshold)
    clean = [r for i, r in enumerate(rows) if i not in leaks and len(prompts[i]) <= cfg.max_prompt_chars
             and len(str(r["completion"])) <= cfg.max_response_chars]
    return PreferenceDataset(train=train, test=test, report=report, config=cfg, unpaired=clean,
                             unpaired_leaked=len(rows) - len(clean))


def unpaired_rows(records: Iterable[FeedbackRecord]) -> list[dict[str, object]]:
    """KTO-style rows (`prompt`, `completion`, `label`) from single ratings: liked -> True, disliked -> False,
    neutral (3) left out; a correction adds a True row of its own. PII redacted; sorted; duplicates dropped."""
    rows: set[tuple[str, str, bool]] = set()
    for r in records:
        if r.polarity != "neutral":
            rows.add((redact_pii(r.question), redact_pii(r.answer), r.polarity == "positive"))
        if r.corrected_answer is not None:
            rows.add((redact_pii(r.question), redact_pii(r.corrected_answer), True))
    return [{"prompt": p, "completion": c, "label": label} for p, c, label in sorted(rows)]


def count_by_source(pairs: Iterable[PreferencePair]) -> dict[str, int]:
    counts = dict.fromkeys(SOURCES, 0)
    for p in pairs:
        counts[p.source] += 1
    return counts


# ---------------------------------------------------------------- export
