"""The monitoring layer's configuration: the MLflow store and the drift signals' thresholds.

Each section is a pydantic model `Settings` composes (`reasonloop/settings.py`); code of this layer takes the
section it needs, never the whole `Settings`."""

from __future__ import annotations

import os

from pydantic import Field

from reasonloop.schemas import Section


class MlflowConfig(Section):
    tracking_uri: str | None = Field(default=None, description="None: SQLite under the state folder")
    experiment_prefix: str = "reasonloop"
    log_traces: bool = Field(default=True, description="each question as an MLflow trace on the eval run")


class QueryDriftConfig(Section):
    """Question embeddings: MMD permutation test."""

    alpha: float = Field(default=0.01, gt=0.0, lt=1.0, description="drift when the permutation p-value is below")
    max_samples: int = Field(default=300, ge=2, description="questions per window (seeded subsample beyond)")
    n_permutations: int = Field(default=200, ge=19, description="the smallest p-value is 1 / (n + 1)")


class RetrievalDriftConfig(Section):
    """Top-1 retrieval scores (cosine when dense retrieval saw the chunk): KS + PSI."""

    alpha: float = Field(default=0.01, gt=0.0, lt=1.0, description="drift when the KS p-value is below")
    psi_threshold: float = Field(default=0.1, ge=0.0, description="and PSI at least this (0: plain KS)")
    low_score: float = Field(default=0.3, description="a top-1 score under this counts as a low retrieval")
    n_bins: int = Field(default=10, ge=2, description="PSI's bins (quantiles of the reference)")


class OutputDriftConfig(Section):
    """Answers: length and tokens (KS + PSI); refusals, strategy mix and citations (chi-square)."""

    alpha: float = Field(default=0.01, gt=0.0, lt=1.0, description="drift when a test's p-value is below")
    psi_threshold: float = Field(default=0.1, ge=0.0, description="numeric signals: and PSI at least this")
    n_bins: int = Field(default=10, ge=2, description="PSI's bins (quantiles of the reference)")
    min_count: int = Field(default=5, ge=1, description="rarer categories are pooled before the chi-square test")
    refusal_patterns: list[str] = Field(
        default_factory=lambda: [r"\bI (?:can[’']t|cannot|am unable to|won[’']t)\b", r"\bI do(?:n[’']t| not) know\b",
                                 r"\b(?:not|no) (?:enough|sufficient) (?:information|context)\b",
                                 r"\bnot (?:mentioned|stated|found) in the (?:context|documents?)\b"],
        description="case-insensitive regexes: an answer matching one is a refusal (so is a guardrail refusal)")


class QualityDriftConfig(Section):
    """Nightly judge metrics over the series of nightly-eval runs: two-sided CUSUM."""

    metrics: list[str] = Field(default_factory=lambda: ["accuracy", "grounding_rate"], min_length=1,
                               description="nightly-eval run metrics followed night by night")
    history: int = Field(default=40, ge=2, description="nightly-eval runs read back, the current one included")
    reference_runs: int = Field(default=20, ge=1, description="the oldest runs of the history that set the mean "
                                "and sd; the CUSUM runs over the rest")
    min_samples: int = Field(default=10, ge=2, description="fewer reference runs with the metric: insufficient data")
    k: float = Field(default=0.5, ge=0.0, description="CUSUM slack, in reference sds")
    h: float = Field(default=8.0, gt=0.0, description="CUSUM alarm limit, in reference sds")


class CorpusDriftConfig(Section):
    """The chunks a reindex added or changed vs the old corpus: their novelty (distance to the nearest old chunk,
    unseen words) against the old chunks' own, one-sided Mann-Whitney U tests."""

    alpha: float = Field(default=0.01, gt=0.0, lt=1.0, description="drift when the smaller p-value, doubled, is below")
    min_changed: int = Field(default=5, ge=2, description="fewer added or changed chunks: insufficient data")
    max_samples: int = Field(default=1000, ge=10, description="chunks scored per side (seeded subsample beyond)")


class DriftConfig(Section):
    """`reasonloop drift`: does the newest nightly eval (queries, retrieval, answers, judge metrics, the index it
    read) differ from its reference, the baseline run or else the previous `window` runs?"""

    enabled: bool = Field(default=True, description="run the drift flow after every nightly eval")
    window: int = Field(default=5, ge=1, description="previous nightly-eval runs pooled as the reference "
                        "when no baseline is set")
    min_samples: int = Field(default=20, ge=2, description="fewer usable values in a window: insufficient data")
    seed: int = Field(default=0, description="subsampling and permutations are seeded: reruns agree")
    query: QueryDriftConfig = Field(default_factory=QueryDriftConfig)
    retrieval: RetrievalDriftConfig = Field(default_factory=RetrievalDriftConfig)
    output: OutputDriftConfig = Field(default_factory=OutputDriftConfig)
    quality: QualityDriftConfig = Field(default_factory=QualityDriftConfig)
    corpus: CorpusDriftConfig = Field(default_factory=CorpusDriftConfig)
    webhook_url: str | None = Field(default=None, pattern=r"^https?://\S+$",
                                    description="POST a JSON alert here on drift; None: no webhook")
    webhook_url_env: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="the NAME of an env var holding the webhook URL, for URLs that carry a token (Slack, Teams): "
                    "settings are logged and passed to Prefect as parameters, the environment is not")
    webhook_timeout_s: float = Field(default=5.0, gt=0.0, le=60.0, description="a slower webhook is a warning")

    def webhook(self) -> str | None:
        """The URL to POST to: the env var's value when `webhook_url_env` is set (and non-empty), else
        `webhook_url`."""
        if self.webhook_url_env and (value := os.environ.get(self.webhook_url_env)):
            return value
        return self.webhook_url
