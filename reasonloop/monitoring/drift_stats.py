"""Drift signals: does a current window (queries, retrieval scores, answers, nightly metrics, a reindexed corpus)
differ from its reference window? Pure statistics over arrays; every threshold comes from the caller (config).

Thin data never raises and never alarms: an empty window, fewer than `min_samples` values, embeddings of different
dimensions or all-NaN values give status "insufficient_data" with drifted=False and a detail naming what is
missing. Only a wrong shape (say 1-D values where 2-D embeddings are expected) raises ValueError naming the argument.

Default alphas are 0.01, not 0.05: a nightly monitor runs several signals every night, and each false alarm costs a
person's time.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from pydantic import Field

from reasonloop.schemas import Record

Status = Literal["ok", "drift", "insufficient_data"]
RARE = "(rare)"
_WORD = re.compile(r"[^\W\d_]+")  # letters only: new numbers (years, ids) are not new vocabulary


class SignalResult(Record):
    """One drift signal's verdict on a reference window vs a current window."""

    signal: str
    test: str
    statistic: float | None = None
    p_value: float | None = None
    threshold: float = Field(description="alpha for hypothesis tests, the control limit or effect size otherwise")
    drifted: bool = False
    status: Status
    n_reference: int = Field(description="usable values in the reference window (NaN rows dropped)")
    n_current: int
    detail: str
    extra: dict[str, float] = Field(default_factory=dict)


def _verdict(drifted: bool, **fields: object) -> SignalResult:
    return SignalResult.model_validate({**fields, "drifted": drifted, "status": "drift" if drifted else "ok"})


def _insufficient(signal: str, test: str, threshold: float, n_reference: int, n_current: int,
                  detail: str) -> SignalResult:
    return SignalResult(signal=signal, test=test, threshold=threshold, status="insufficient_data",
                        n_reference=n_reference, n_current=n_current, detail=detail)


def _shortage(min_samples: int, **counts: int) -> str | None:
    """Which window has too few values, or None when every window has enough."""
    short = [f"{name} has {n} usable values (need {min_samples})" for name, n in counts.items() if n < min_samples]
    return "; ".join(short) or None


def _values(values: ArrayLike, name: str) -> np.ndarray:
    """Finite values of a 1-D array (NaN means missing); ValueError names the argument when it is not 1-D."""
    data = np.asarray(values, dtype=float)
    if data.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of numbers, got shape {data.shape}")
    return data[np.isfinite(data)]


def _embeddings(values: ArrayLike, name: str) -> np.ndarray:
    """Rows of a 2-D embedding array without non-finite rows; an empty input is an empty window, not an error."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return data.reshape(0, data.shape[-1] if data.ndim == 2 else 0)
    if data.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (one embedding per row), got shape {data.shape}")
    return data[np.isfinite(data).all(axis=1)]


def _embedding_shortage(reference: np.ndarray, current: np.ndarray, min_samples: int) -> str | None:
    short = _shortage(min_samples, reference=len(reference), current=len(current))
    if short is None and reference.shape[1] != current.shape[1]:
        return f"embedding dimensions differ: reference {reference.shape[1]}, current {current.shape[1]}"
    return short


def centroid_shift(reference: np.ndarray, current: np.ndarray) -> float:
    """1 - cosine of the two windows' mean vectors: 0 for the same direction, up to 2 for opposite ones."""
    a, b = reference.mean(axis=0), current.mean(axis=0)
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return 1.0 - float(a @ b) / norms if norms > 0 else 0.0


def mmd_permutation_test(reference: np.ndarray, current: np.ndarray, n_permutations: int,
                         rng: np.random.Generator) -> tuple[float, float, float]:
    """(MMD², permutation p-value, RBF bandwidth) of two samples of vectors.

    MMD² is the biased (V-statistic) estimate with k(x, y) = exp(-|x - y|² / 2σ²), σ the median pairwise distance
    of the pooled sample. The kernel is computed once; each relabelling w (1/n for one side, -1/m for the other)
    scores w·K·w, so all permutations are one matrix product.
    """
    from scipy.spatial.distance import pdist, squareform

    pooled = np.vstack([reference, current])
    distances = pdist(pooled, "sqeuclidean")
    median = float(np.median(distances)) if distances.size else 0.0
    kernel = np.exp(-squareform(distances) / (2 * median)) if median > 0 else np.ones((len(pooled),) * 2)
    n, m = len(reference), len(current)
    labels = np.concatenate([np.full(n, 1 / n), np.full(m, -1 / m)])
    weights = np.vstack([labels] + [rng.permutation(labels) for _ in range(n_permutations)])
    mmd2 = np.einsum("ij,ij->i", weights @ kernel, weights)
    p_value = (1 + int(np.sum(mmd2[1:] >= mmd2[0] - 1e-12))) / (1 + n_permutations)
    return max(float(mmd2[0]), 0.0), p_value, math.sqrt(median)


def detect_query_drift(reference: ArrayLike, current: ArrayLike, *, alpha: float = 0.01, min_samples: int = 20,
                       max_samples: int = 300, n_permutations: int = 200, seed: int = 0) -> SignalResult:
    """Query embeddings (rows, e.g. all-MiniLM-L6-v2): drift when the MMD permutation test gives p < alpha.

    Each window is subsampled to `max_samples` rows (seeded) so the kernel stays small; the centroid cosine shift
    over the full windows goes to `extra` as an effect size people can read. The smallest possible p-value is
    1 / (n_permutations + 1), so alpha must be above it.
    """
    test = "mmd_rbf_permutation"
    ref, cur = _embeddings(reference, "reference"), _embeddings(current, "current")
    missing = _embedding_shortage(ref, cur, min_samples)
    if missing:
        return _insufficient("query", test, alpha, len(ref), len(cur), missing)
    rng = np.random.default_rng(seed)
    ref_s, cur_s = (w[rng.choice(len(w), max_samples, replace=False)] if len(w) > max_samples else w
                    for w in (ref, cur))
    mmd2, p_value, bandwidth = mmd_permutation_test(ref_s, cur_s, n_permutations, rng)
    shift = centroid_shift(ref, cur)
    drifted = p_value < alpha
    return _verdict(drifted, signal="query", test=test, statistic=mmd2, p_value=p_value, threshold=alpha,
                    n_reference=len(ref), n_current=len(cur),
                    detail=f"MMD² {mmd2:.4f}, permutation p={p_value:.3f} {'<' if drifted else '>='} alpha {alpha} "
                           f"({len(ref_s)} vs {len(cur_s)} queries); centroid shift {shift:.3f}",
                    extra={"centroid_shift": shift, "bandwidth": bandwidth, "n_permutations": float(n_permutations)})


def population_stability_index(reference: np.ndarray, current: np.ndarray, n_bins: int = 10,
                               epsilon: float = 1e-4) -> float:
    """PSI on the reference's quantile bins: sum (c - r) ln(c / r), shares floored at `epsilon` so an empty bin
    counts as rare rather than infinite. Rules of thumb: < 0.1 stable, 0.1-0.2 moderate, > 0.2 significant."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, n_bins + 1)[1:-1]))

    def shares(values: np.ndarray) -> np.ndarray:
        counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
        return np.maximum(counts / len(values), epsilon)

    r, c = shares(reference), shares(current)
    return float(np.sum((c - r) * np.log(c / r)))


def detect_numeric_drift(reference: ArrayLike, current: ArrayLike, *, signal: str = "output.numeric",
                         alpha: float = 0.01, psi_threshold: float = 0.1, n_bins: int = 10,
                         min_samples: int = 20) -> SignalResult:
    """Per-item numbers (answer tokens, scores): drift when KS p < alpha and PSI >= psi_threshold.

    Both, because each alone misleads: KS on thousands of values flags shifts too small to matter, and PSI on a few
    dozen values is noisy (about (bins - 1)(1/n + 1/m) with no shift at all). psi_threshold=0 is plain KS.
    """
    from scipy.stats import ks_2samp

    test = "ks_2samp+psi"
    ref, cur = _values(reference, "reference"), _values(current, "current")
    missing = _shortage(min_samples, reference=len(ref), current=len(cur))
    if missing:
        return _insufficient(signal, test, alpha, len(ref), len(cur), missing)
    ks = ks_2samp(ref, cur)
    psi = population_stability_index(ref, cur, n_bins)
    statistic, p_value = float(ks.statistic), float(ks.pvalue)
    drifted = p_value < alpha and psi >= psi_threshold
    return _verdict(drifted, signal=signal, test=test, statistic=statistic, p_value=p_value, threshold=alpha,
                    n_reference=len(ref), n_current=len(cur),
                    detail=f"KS D={statistic:.3f} p={p_value:.4f} (alpha {alpha}), PSI {psi:.3f} "
                           f"(threshold {psi_threshold}); median {np.median(ref):.3g} -> {np.median(cur):.3g}",
                    extra={"psi": psi, "psi_threshold": psi_threshold, "reference_median": float(np.median(ref)),
                           "current_median": float(np.median(cur))})


def detect_retrieval_drift(reference: ArrayLike, current: ArrayLike, *, alpha: float = 0.01,
                           psi_threshold: float = 0.1, low_score: float = 0.3, n_bins: int = 10,
                           min_samples: int = 20) -> SignalResult:
    """Top-k similarity scores, NaN for a retrieval that returned nothing: the numeric rule on the scores it did
    return, plus each window's share of empty and of low (< `low_score`) retrievals in `extra`."""
    result = detect_numeric_drift(reference, current, signal="retrieval", alpha=alpha, psi_threshold=psi_threshold,
                                  n_bins=n_bins, min_samples=min_samples)
    shares: dict[str, float] = {}
    for name, window in (("reference", reference), ("current", current)):
        scores = np.asarray(window, dtype=float)
        if scores.size:
            shares[f"{name}_empty_share"] = float(np.mean(np.isnan(scores)))
            shares[f"{name}_low_share"] = float(np.mean(scores < low_score))  # NaN compares False: not low
    return result.model_copy(update={"extra": {**result.extra, **shares}})


def _is_missing(value: Hashable | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def detect_categorical_drift(reference: Sequence[Hashable | None], current: Sequence[Hashable | None], *,
                             signal: str = "output.category", alpha: float = 0.01, min_samples: int = 20,
                             min_count: int = 5) -> SignalResult:
    """Category mixes (strategy, refusal yes/no, citation present): chi-square test of homogeneity, drift when
    p < alpha (Yates-corrected for two categories, scipy's default). A category seen in one window only is a
    column with a zero, which the test handles; categories with fewer than `min_count` occurrences overall are
    pooled into one "(rare)" column (left out when even the pool is that small) so that tiny expected counts do
    not inflate the statistic. When every category is rare there is nothing to test: insufficient_data."""
    from scipy.stats import chi2_contingency

    test = "chi2_homogeneity"
    ref = Counter(v for v in reference if not _is_missing(v))
    cur = Counter(v for v in current if not _is_missing(v))
    n_ref, n_cur = sum(ref.values()), sum(cur.values())
    missing = _shortage(min_samples, reference=n_ref, current=n_cur)
    if missing:
        return _insufficient(signal, test, alpha, n_ref, n_cur, missing)
    pooled: dict[str, list[int]] = {}
    for category in sorted(ref.keys() | cur.keys(), key=str):
        counts = [ref[category], cur[category]]
        key = str(category) if sum(counts) >= min_count else RARE
        pooled[key] = [a + b for a, b in zip(pooled.get(key, [0, 0]), counts, strict=True)]
    if sum(pooled.get(RARE, [min_count])) < min_count:
        pooled.pop(RARE)
    extra = {f"{side}_share.{k}": v[i] / (n_ref, n_cur)[i] for k, v in pooled.items()
             for i, side in enumerate(("reference", "current"))}
    if set(pooled) <= {RARE}:
        return _insufficient(signal, test, alpha, n_ref, n_cur,
                             f"every category occurs fewer than {min_count} times (min_count): too few of each")
    if len(pooled) == 1:
        return _verdict(False, signal=signal, test=test, statistic=0.0, p_value=1.0, threshold=alpha,
                        n_reference=n_ref, n_current=n_cur, extra=extra,
                        detail=f"one category in both windows ({next(iter(pooled))}): nothing moved")
    chi2 = chi2_contingency(np.array(list(pooled.values())).T)
    statistic, p_value = float(chi2.statistic), float(chi2.pvalue)
    drifted = p_value < alpha
    moved = max(pooled, key=lambda k: abs(pooled[k][1] / n_cur - pooled[k][0] / n_ref))
    return _verdict(drifted, signal=signal, test=test, statistic=statistic, p_value=p_value, threshold=alpha,
                    n_reference=n_ref, n_current=n_cur, extra=extra,
                    detail=f"chi2 {statistic:.2f} (dof {chi2.dof}) p={p_value:.4f} (alpha {alpha}); largest move: "
                           f"{moved} {pooled[moved][0] / n_ref:.0%} -> {pooled[moved][1] / n_cur:.0%}")


def cusum(z: np.ndarray, k: float) -> tuple[np.ndarray, np.ndarray]:
    """Tabular CUSUM of standardised values: (upper, lower) sums, S_t = max(0, S_t-1 ± z_t - k)."""
    upper, lower = np.zeros(len(z)), np.zeros(len(z))
    up = low = 0.0
    for t, value in enumerate(z):
        up, low = max(0.0, up + value - k), max(0.0, low - value - k)
        upper[t], lower[t] = up, low
    return upper, lower


def detect_quality_drift(series: ArrayLike, n_reference: int, *, signal: str = "quality", k: float = 0.5,
                         h: float = 8.0, min_samples: int = 10, min_std: float = 1e-6) -> SignalResult:
    """A nightly metric (accuracy per night, oldest first): two-sided CUSUM on the nights after the first
    `n_reference`, standardised by the reference nights' mean and std; drift when a sum exceeds `h`.

    h=8 rather than the textbook 5, which assumes a known mean and sd: estimated from 30 reference nights, h=5
    alarms on ~15% of 30 unchanged nights, h=8 on ~3%, and still catches a 1.5 sd drop within 20 nights ~99% of
    the time. `extra` holds the alarm night and the change point (the night after the alarming sum last stood at
    zero) as indices into `series`, present only when an alarm fired. NaN nights (failed runs) are skipped;
    `min_std` keeps a constant reference from turning noise into infinite z-scores.
    """
    test = "cusum"
    values = np.asarray(series, dtype=float)
    if values.ndim != 1:
        raise ValueError(f"series must be a 1-D array of nightly values, got shape {values.shape}")
    index = np.flatnonzero(np.isfinite(values))
    ref_idx, cur_idx = index[index < n_reference], index[index >= n_reference]
    missing = _shortage(max(min_samples, 2), reference=len(ref_idx)) or _shortage(1, current=len(cur_idx))
    if missing:
        return _insufficient(signal, test, h, len(ref_idx), len(cur_idx), missing)
    mean, std = float(values[ref_idx].mean()), max(float(values[ref_idx].std(ddof=1)), min_std)
    upper, lower = cusum((values[cur_idx] - mean) / std, k)
    extra = {"reference_mean": mean, "reference_std": std}
    peak = max(float(upper.max()), float(lower.max()))
    alarms = np.flatnonzero(np.maximum(upper, lower) > h)
    if alarms.size == 0:
        return _verdict(False, signal=signal, test=test, statistic=peak, threshold=h, n_reference=len(ref_idx),
                        n_current=len(cur_idx), extra=extra,
                        detail=f"CUSUM peak {peak:.2f} <= h {h} over {len(cur_idx)} nights (reference mean "
                               f"{mean:.3g}, sd {std:.3g})")
    alarm = int(alarms[0])
    sums, direction = (upper, "up") if upper[alarm] > h else (lower, "down")
    zeros = np.flatnonzero(sums[:alarm] == 0)
    change = int(zeros[-1]) + 1 if zeros.size else 0
    extra |= {"alarm_index": float(cur_idx[alarm]), "change_index": float(cur_idx[change]),
              "direction": 1.0 if direction == "up" else -1.0,
              "shift_sd": float(np.mean((values[cur_idx[change:alarm + 1]] - mean) / std))}
    return _verdict(True, signal=signal, test=test, statistic=peak, threshold=h, n_reference=len(ref_idx),
                    n_current=len(cur_idx), extra=extra,
                    detail=f"CUSUM went {direction} past h {h} at night {cur_idx[alarm]}, change from night "
                           f"{cur_idx[change]} (reference mean {mean:.3g}, sd {std:.3g})")


def _words(texts: Sequence[str]) -> list[str]:
    return _WORD.findall("\n".join(texts).lower())


def _unseen_share(old_words: list[str], new_words: list[str]) -> float:
    vocabulary = set(old_words)
    return sum(w not in vocabulary for w in new_words) / len(new_words) if new_words else 0.0


def new_vocabulary_share(old_texts: Sequence[str], new_texts: Sequence[str]) -> float:
    """Share of the new corpus's word tokens whose type the old corpus never used (0 when the new one has no
    words); words are lower-cased runs of letters."""
    return _unseen_share(_words(old_texts), _words(new_texts))


def _chunks(embeddings: ArrayLike, texts: Sequence[str], name: str) -> tuple[np.ndarray, list[str]]:
    """A corpus's embedding rows and their texts, rows that are not finite left out with their text."""
    data = np.asarray(embeddings, dtype=float)
    rows = _embeddings(data, name)  # checks the shape
    if data.size and len(data) != len(texts):
        raise ValueError(f"{name} must be a 2-D array with one row per text: {len(data)} rows, {len(texts)} texts")
    keep = np.isfinite(data).all(axis=1) if data.size else np.zeros(0, dtype=bool)
    return rows, [t for t, kept in zip(texts, keep, strict=False) if kept]


def _max_cosine(rows: np.ndarray, corpus: np.ndarray, skip_self: bool, block: int = 512) -> np.ndarray:
    """Each row's highest cosine to the corpus (to the rest of it when the rows are its first rows)."""
    best = np.empty(len(rows))
    for start in range(0, len(rows), block):
        sims = rows[start:start + block] @ corpus.T
        if skip_self:
            sims[np.arange(len(sims)), np.arange(start, start + len(sims))] = -np.inf
        best[start:start + block] = sims.max(axis=1)
    return best


def chunk_novelty(old_embeddings: np.ndarray, old_texts: Sequence[str], new_embeddings: np.ndarray,
                  new_texts: Sequence[str], n_old: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """How new each chunk is, two ways, for the new chunks against the old corpus and for the first `n_old` old
    chunks against the rest of it (their own novelty: the no-change yardstick at this corpus's size): 1 - highest
    cosine, and the share of its words no (other) old chunk uses. Returns (old distance, new distance, old unseen
    share, new unseen share)."""
    old_sets = [set(_words([t])) for t in old_texts]
    frequency = Counter(w for words in old_sets for w in words)

    def unseen(text: str, own: set[str] | None) -> float:
        words = _words([text])
        if not words:
            return 0.0
        return sum(frequency[w] - (w in own if own else 0) == 0 for w in words) / len(words)

    old_distance = 1.0 - _max_cosine(old_embeddings[:n_old], old_embeddings, skip_self=True)
    new_distance = 1.0 - _max_cosine(new_embeddings, old_embeddings, skip_self=False)
    old_unseen = [unseen(t, words) for t, words in zip(old_texts[:n_old], old_sets, strict=False)]
    return old_distance, new_distance, np.array(old_unseen), np.array([unseen(t, None) for t in new_texts])


def detect_corpus_drift(old_embeddings: ArrayLike, new_embeddings: ArrayLike, old_texts: Sequence[str],
                        new_texts: Sequence[str], *, alpha: float = 0.01, min_changed: int = 5,
                        min_samples: int = 20, max_samples: int = 1000, seed: int = 0) -> SignalResult:
    """Old vs new chunks after a reindex. Only the chunks the reindex added or changed can move the corpus; each is
    scored by its novelty against the old corpus (embedding distance to its nearest old chunk, share of words no old
    chunk uses), and compared with the old chunks' own novelty against the rest of the old corpus by one-sided
    Mann-Whitney U tests: drift when either p-value < alpha / 2 (Bonferroni). Same-domain additions are as novel
    as old chunks are to each other, whatever the corpus size; another domain's are more. At most `max_samples`
    chunks per side are scored (seeded)."""
    from scipy.stats import mannwhitneyu

    test = "mann_whitney_novelty"
    old, old_texts = _chunks(old_embeddings, old_texts, "old_embeddings")
    new, new_texts = _chunks(new_embeddings, new_texts, "new_embeddings")
    known = set(old_texts)
    changed = [i for i, t in enumerate(new_texts) if t not in known]
    missing = _embedding_shortage(old, new, min_samples) or _shortage(min_changed, changed_chunks=len(changed))
    if missing:
        return _insufficient("corpus", test, alpha, len(old), len(changed), missing)
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.permutation(len(old))[:max_samples])
    order = np.concatenate([picked, np.setdiff1d(np.arange(len(old)), picked)])  # the scored old chunks first
    changed = sorted(rng.permutation(changed)[:max_samples].tolist())
    old_distance, new_distance, old_unseen, new_unseen = chunk_novelty(
        old[order], [old_texts[i] for i in order], new[changed], [new_texts[i] for i in changed], len(picked))
    p_distance = float(mannwhitneyu(new_distance, old_distance, alternative="greater").pvalue)
    p_words = float(mannwhitneyu(new_unseen, old_unseen, alternative="greater").pvalue)
    p_value = min(1.0, 2 * min(p_distance, p_words))
    lift = float(np.median(new_distance) - np.median(old_distance))
    return _verdict(p_value < alpha, signal="corpus", test=test, statistic=lift, p_value=p_value, threshold=alpha,
                    n_reference=len(old), n_current=len(changed),
                    detail=f"{len(changed)} added or changed chunks vs the old corpus: median distance to the nearest "
                           f"old chunk {np.median(new_distance):.3f} (old chunks to each other "
                           f"{np.median(old_distance):.3f}, p {p_distance:.2g}), unseen words "
                           f"{np.mean(new_unseen):.3f} ({np.mean(old_unseen):.3f}, p {p_words:.2g})",
                    extra={"p_distance": p_distance, "p_words": p_words,
                           "centroid_shift": centroid_shift(old, new),
                           "new_vocab_share": new_vocabulary_share(old_texts, new_texts),
                           "changed_unseen_share": float(np.mean(new_unseen)),
                           "old_unseen_share": float(np.mean(old_unseen))})
