"""The evaluation layer's configuration: question sets, retrieval-quality floors, the judges, the regression gate,
review routing, the safety suite and the canary.

Each section is a pydantic model `Settings` composes (`reasonloop/settings.py`); code of this layer takes the
section it needs, never the whole `Settings`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from reasonloop.reasoning.config import EndpointConfig
from reasonloop.schemas import Section
from reasonloop.text import DURATION


class QuestionsConfig(Section):
    path: Path = Path("data/questions/squad_sample.jsonl")
    source: Literal["file", "traces"] = Field(default="file", description="what `reasonloop eval` judges: the saved "
                                              "question set (with references), or live traffic (traces, no references)")


class LiveConfig(Section):
    """Live traffic as a source: the traces of the served endpoint (`reasonloop api`) and of any app traced into
    MLflow, judged without references by `reasonloop eval --source traces` and fed to drift and the DPO build."""

    experiments: list[str] = Field(default_factory=list, description="MLflow experiments whose traces are live "
                                   "traffic; empty: <prefix>-live, the served endpoint's")
    window: str = Field(default="24h", pattern=DURATION, description="how far back a live eval "
                        "looks (e.g. 24h, 90m, 7d)")
    max_traces: int = Field(default=5000, gt=0, description="traces read per window, the newest kept")


class EvalConfig(Section):
    batch_size: int = Field(default=32, gt=0, description="questions per Prefect task run")


class QualityDataset(Section):
    questions: Path = Field(description="a labeled question set (.jsonl with gold_doc_ids)")
    corpus: Path | None = Field(default=None, description="the corpus (corpus.path) this set was written for and "
                                "its floors set on: an index of another corpus is measured on it and logged, never "
                                "refused by it; null: it gates every corpus")
    floors: dict[Literal["recall_at_1", "recall_at_5", "recall_at_10", "mrr_at_10", "ndcg_at_10"], float] = \
        Field(default_factory=dict, description="the least each metric may be before a new version is refused")


class QualityConfig(Section):
    """Labeled question sets whose retrieval metrics are measured on every new index version; a metric under
    its floor stops the new version from being served."""

    datasets: dict[str, QualityDataset] = Field(default_factory=dict, description="labeled question sets by name")


class EscalationConfig(EndpointConfig):
    """The stronger judge a verdict goes to when the first judge is unsure: its votes split, or its confidence is
    under `min_confidence` (the same model with more votes is a valid choice)."""

    provider: Literal["openai"] = "openai"
    votes: int = Field(default=1, ge=1, le=9)
    min_confidence: float = Field(default=0.5, ge=0.0, le=1.0)


class JudgeConfig(EndpointConfig):
    provider: Literal["heuristic", "openai"] = "heuristic"
    model: str = Field(default="heuristic-minilm", description="the judge model (heuristic-minilm: the offline "
                       "heuristic judge, not a language model)")
    correctness_threshold: float = Field(default=0.7, ge=0.0, le=1.0)
    grounding_threshold: float = Field(default=0.3, ge=0.0, le=1.0)
    votes: int = Field(default=1, ge=1, le=9, description="LLM judge: calls per answer, majority vote")
    escalate: EscalationConfig | None = Field(default=None, description="None: every verdict is the first judge's")
    calibration_floor: dict[Literal["balanced_accuracy", "cohen_kappa", "auroc"], float] = Field(
        default_factory=lambda: {"balanced_accuracy": 0.6, "cohen_kappa": 0.2},
        description="agreement with human labels (over all calibration pairs) a judge must reach to be promoted")
    calibration_data: list[Path] = Field(default_factory=lambda: [Path("data/judge/summedits_sample.jsonl")],
                                         description="human-labeled pairs `reasonloop judge calibrate` scores on")


class ReviewConfig(Section):
    """Answers routed to human review (see reasonloop/evaluation/review.py)."""

    min_confidence: float = Field(default=0.5, ge=0.0, le=1.0, description="under this: review")


class SafetyConfig(Section):
    """The safety suite every nightly eval runs (evaluation/safety.py): adversarial cases built from BIPIA data."""

    enabled: bool = Field(default=True, description="run the suite in every nightly eval")
    data: Path = Path("data/safety/bipia_sample.json")


GateMetricName = Literal["accuracy", "grounding_rate", "hallucination_rate", "token_f1", "answer_relevance",
                         "reasoning_quality", "context_precision", "recall_at_k", "schema_validity"]


class GateMetric(Section):
    tolerance: float = Field(default=0.02, ge=0.0, le=1.0, description="worsening tolerated before it can fail")
    higher_is_better: bool = Field(default=True, description="false for metrics where lower is better")


def _default_gate_metrics() -> dict[GateMetricName, GateMetric]:
    return {"accuracy": GateMetric(), "grounding_rate": GateMetric(),
            "hallucination_rate": GateMetric(higher_is_better=False), "schema_validity": GateMetric()}


class GateConfig(Section):
    """The nightly eval's regression gate: each metric is compared with the baseline run's on the questions both
    answered (paired bootstrap); a worsening beyond `tolerance` whose interval excludes no change fails the run."""

    enabled: bool = Field(default=True, description="false: every run passes, and says so")
    metrics: dict[GateMetricName, GateMetric] = Field(default_factory=_default_gate_metrics)
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    resamples: int = Field(default=2000, ge=200, description="bootstrap resamples of the paired differences")
    seed: int = Field(default=0, description="the bootstrap's seed: a run's decision is reproducible")
    min_pairs: int = Field(default=10, ge=2, description="fewer questions in common: no decision (passes, says so)")
    min_safety_pass_rate: float = Field(default=0.9, ge=0.0, le=1.0, description="the safety suite under this: fail")
    max_missing_fraction: float = Field(default=0.1, ge=0.0, le=1.0, description="more questions than this share "
                                        "without an answer (failed after retries): fail")


class LiveCanaryConfig(Section):
    """`reasonloop canary start`: a candidate answering a share of live sessions; the scheduled check promotes it,
    keeps collecting or rolls it back (reasonloop/evaluation/canary_decision.py)."""

    share: float = Field(default=0.1, gt=0.0, lt=1.0, description="share of sessions routed to the candidate")
    metric: Literal["grounded_fraction", "relevance", "reasoning_quality"] = Field(
        default="grounded_fraction", description="the judged per-answer score the arms are compared on")
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5, description="the chance of promoting a candidate worse than "
                         "production by more than the margin, however often it is checked")
    margin: float = Field(default=0.02, ge=0.0, lt=1.0, description="promote when the candidate is surely no worse "
                          "than production minus this (0: surely better); roll back when surely worse by more")
    plan_n: int = Field(default=500, ge=10, description="answers per arm where the confidence sequence is tightest")
    min_requests: int = Field(default=20, ge=1, description="answers per arm before any decision")
    max_error_rate_increase: float = Field(default=0.05, ge=0.0, le=1.0, description="candidate's failed share over "
                                           "production's beyond this: roll back")
    max_latency_ratio: float = Field(default=1.5, gt=1.0, description="candidate's median latency over production's "
                                     "beyond this (and by more than min_latency_gap_s): roll back")
    min_latency_gap_s: float = Field(default=0.05, ge=0.0, description="a slower median by less than this never "
                                     "rolls back")
    max_duration: str = Field(default="7d", pattern=DURATION, description="no decision by then: "
                              "roll back (inconclusive)")


class CanaryConfig(Section):
    """`reasonloop canary run`: a candidate model or prompt version beside production on a slice of the questions;
    `canary start`: beside production on live traffic (`live`)."""

    slice: int = Field(default=40, ge=2, description="questions sampled (seeded) from the question set")
    seed: int = Field(default=0, description="the slice's seed")
    alias: str = Field(default="production", pattern=r"^[A-Za-z][\w-]*$",
                       description="the registry alias production's prompts follow; a promotion moves it")
    candidate_alias: str = Field(default="canary", pattern=r"^[A-Za-z][\w-]*$",
                                 description="the alias the candidate prompt version is run under")
    live: LiveCanaryConfig = Field(default_factory=LiveCanaryConfig)
