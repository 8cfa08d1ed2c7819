"""The one settings object: `configs/default.yaml` < `configs/profiles/<profile>.yaml` < REASONLOOP_* env.

Relative paths resolve against the project root. Secrets are never fields: the config names the
environment variable that holds an API key, and `api_key()` reads it only when a provider is built,
so settings can be logged, hashed and shown without leaking anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from reasonloop.errors import ConfigError

ENV_PREFIX = "REASONLOOP_"
PROFILE_NAME = re.compile(r"[A-Za-z0-9][\w.-]*")
INFRASTRUCTURE_KEYS = {"profile", "state_dir", "prefect", "mlflow", "chroma", "drift", "preferences",
                       "deployments"}  # no eval result
_SECRET_WORDS = ("key", "secret", "token", "password", "url")  # a URL may carry a token: never echoed in errors
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def project_root() -> Path:
    """REASONLOOP_ROOT, else the working directory when it holds configs/, else the source checkout."""
    if env := os.environ.get(f"{ENV_PREFIX}ROOT"):
        return Path(env).resolve()
    cwd = Path.cwd()
    if (cwd / "configs" / "default.yaml").is_file():
        return cwd
    return Path(__file__).resolve().parents[1]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JsonlFields(Section):
    id_field: str = "id"
    text_field: str = "text"
    title_field: str = "title"
    metadata_fields: list[str] = Field(default_factory=list)


class CorpusConfig(Section):
    path: Path = Path("data/corpus")
    include: list[str] = Field(
        default_factory=lambda: ["*.md", "*.txt", "*.html", "*.htm", "*.pdf", "*.json", "*.jsonl"], min_length=1)
    jsonl: JsonlFields = Field(default_factory=JsonlFields)
    max_file_bytes: int = Field(default=20_000_000, gt=0, description="larger files are quarantined unread")
    max_doc_chars: int = Field(default=2_000_000, gt=0, description="longer documents are quarantined")
    max_bad_fraction: float = Field(default=0.05, ge=0.0, le=1.0,
                                    description="the reindex fails when more of the inputs than this are bad")
    injection: Literal["flag", "quarantine"] = Field(
        default="flag", description="documents that look like prompt injection: flag in metadata, or quarantine")


class QuestionsConfig(Section):
    path: Path = Path("data/questions/squad_sample.jsonl")


ENCODER_MAX_TOKENS = 256  # all-MiniLM-L6-v2 reads at most this many tokens of a text


class ChunkingConfig(Section):
    unit: Literal["chars", "tokens"] = Field(default="chars", description="what chunk_size and overlap count")
    chunk_size: int = Field(default=1000, gt=0, description="units per chunk")
    chunk_overlap: int = Field(default=100, ge=0)
    title_prefix: bool = Field(default=True, description="index 'title + text' (the stored text stays the chunk)")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingConfig:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(f"chunk_overlap ({self.chunk_overlap}) must be below chunk_size ({self.chunk_size})")
        if self.unit == "tokens" and self.chunk_size > ENCODER_MAX_TOKENS - 2:
            raise ValueError(f"chunk_size ({self.chunk_size} tokens) must leave room in the encoder's "
                             f"{ENCODER_MAX_TOKENS} tokens for its 2 special tokens (and the title, with title_prefix)"
                             "; longer chunks would be cut silently")
        return self


class EmbeddingConfig(Section):
    model: Literal["all-MiniLM-L6-v2"] = "all-MiniLM-L6-v2"
    sha256: str = Field(default=MINILM_SHA256, pattern=r"^[0-9a-f]{64}$")
    batch_size: int = Field(default=8, gt=0)
    workers: int = Field(default=0, ge=0, description="concurrent forward passes on CPU; 0: one per core")
    device: str = "cpu"


class ChromaConfig(Section):
    mode: Literal["persistent", "http"] = "persistent"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, gt=0, lt=65536)
    collection: str = Field(default="reasonloop", min_length=3, max_length=63, pattern=r"^[A-Za-z0-9][\w.-]*$")
    upsert_batch_size: int = Field(default=1000, gt=0)


class IndexConfig(Section):
    keep_versions: int = Field(default=3, ge=1, description="index versions kept for rollback")
    lock_wait_s: float = Field(default=30.0, ge=0.0, description="how long a reindex waits for a running one")
    verify_queries: int = Field(default=3, ge=0, description="sample queries a new version must answer")


class BM25Config(Section):
    k1: float = Field(default=0.9, gt=0)
    b: float = Field(default=0.75, ge=0, le=1)
    method: Literal["robertson", "lucene", "bm25l", "bm25+", "atire"] = "lucene"
    stemmer: Literal["english", "none"] = "english"


class RetrievalConfig(Section):
    mode: Literal["dense", "bm25", "hybrid"] = "hybrid"
    top_k: int = Field(default=4, gt=0, le=100)
    candidates: int = Field(default=50, gt=0, description="hits per retriever before fusion")
    fusion: Literal["zscore", "rrf"] = Field(default="zscore", description="how hybrid mode combines the two")
    rrf_k: int = Field(default=60, gt=0, description="reciprocal rank fusion constant")
    dense_weight: float = Field(default=0.7, ge=0)
    bm25_weight: float = Field(default=1.0, ge=0)
    bm25: BM25Config = Field(default_factory=BM25Config)


class QualityDataset(Section):
    questions: Path
    floors: dict[Literal["recall_at_1", "recall_at_5", "recall_at_10", "mrr_at_10", "ndcg_at_10"], float] = \
        Field(default_factory=dict)


class QualityConfig(Section):
    """Labeled question sets whose retrieval metrics are measured on every new index version; a metric under
    its floor stops the new version from being served."""

    datasets: dict[str, QualityDataset] = Field(default_factory=dict)


@dataclass(frozen=True)
class CallLimits:
    """How hard one endpoint may be called: calls in flight, call starts and tokens per minute (None: unpaced)."""

    max_concurrency: int
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    max_retries: int = 0  # transient failures retried per call (reasonloop/reasoning/llm_calls.py)


class EndpointConfig(Section):
    """An OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp server)."""

    model: str
    base_url: str | None = Field(default=None, description="an OpenAI-compatible endpoint; credentials never go in it")
    api_key_env: str = Field(default="OPENAI_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                             description="the NAME of the env var holding the key, never the key")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(default=800, gt=0)
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=2, ge=0)
    max_concurrency: int = Field(default=8, gt=0)
    requests_per_minute: float | None = Field(default=None, gt=0, description="pace call starts; None: unpaced")
    tokens_per_minute: float | None = Field(default=None, gt=0, description="pace tokens (prompt + max_tokens "
                                            "reserved, the unused part refunded); None: unpaced")

    @field_validator("base_url")
    @classmethod
    def _no_credentials(cls, value: str | None) -> str | None:
        """A URL is logged (MLflow params, Prefect parameters, HTTP client logs): a password in it would leak."""
        if value is not None and "@" in (urlsplit(value).netloc or ""):
            raise ValueError("the URL holds credentials (user:password@): remove them and put the key in the "
                             "environment variable that api_key_env names")
        return value

    def limits(self) -> CallLimits:
        return CallLimits(self.max_concurrency, self.requests_per_minute, self.tokens_per_minute, self.max_retries)

    def api_key(self) -> SecretStr | None:
        value = os.environ.get(self.api_key_env)
        return SecretStr(value) if value else None


class LLMConfig(EndpointConfig):
    provider: Literal["extractive", "openai"] = "extractive"
    model: str = "extractive-minilm"
    max_sentences: int = Field(default=1, gt=0, description="extractive: sentences quoted in the answer")


class EscalationConfig(EndpointConfig):
    """The stronger judge a verdict goes to when the first judge is unsure: its votes split, or its confidence is
    under `min_confidence` (the same model with more votes is a valid choice)."""

    provider: Literal["openai"] = "openai"
    votes: int = Field(default=1, ge=1, le=9)
    min_confidence: float = Field(default=0.5, ge=0.0, le=1.0)


class JudgeConfig(EndpointConfig):
    provider: Literal["heuristic", "openai"] = "heuristic"
    model: str = "heuristic-minilm"
    correctness_threshold: float = Field(default=0.7, ge=0.0, le=1.0)
    grounding_threshold: float = Field(default=0.3, ge=0.0, le=1.0)
    votes: int = Field(default=1, ge=1, le=9, description="LLM judge: calls per answer, majority vote")
    escalate: EscalationConfig | None = Field(default=None, description="None: every verdict is the first judge's")
    calibration_floor: dict[Literal["balanced_accuracy", "cohen_kappa", "auroc"], float] = Field(
        default_factory=lambda: {"balanced_accuracy": 0.6, "cohen_kappa": 0.2},
        description="agreement with human labels (over all calibration pairs) a judge must reach to be promoted")
    calibration_data: list[Path] = Field(default_factory=lambda: [Path("data/judge/summedits_sample.jsonl")],
                                         description="human-labeled pairs `reasonloop judge calibrate` scores on")


PROMPT_ROLES = ("reasoning", "direct", "react", "verify", "revise", "synthesize")  # the reasoner's single-prompt roles


class PromptsConfig(Section):
    """The template of each role, the strategies say which roles they use: `name` is the file `dir/<name>.yaml`,
    `name@alias` the version an alias points at in MLflow's prompt registry (`reasonloop prompt alias`)."""

    dir: Path = Path("configs/prompts")
    reasoning: str = "chain_of_thought"
    direct: str = "direct_answer"
    react: str = "react_step"
    verify: str = "verify_answer"
    revise: str = "revise_answer"
    paths: list[str] = Field(default_factory=lambda: ["path_analytical", "path_systematic"], min_length=2)
    synthesize: str = "synthesize_paths"
    judge: str = "judge_answer"
    pairwise: str = "judge_pairwise"   # the canary's A/B comparison (LLM judge only)


class Price(Section):
    input_per_1m: float = Field(ge=0.0)
    output_per_1m: float = Field(ge=0.0)

    def cost_usd(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input_per_1m + tokens_out * self.output_per_1m) / 1_000_000


class MlflowConfig(Section):
    tracking_uri: str | None = Field(default=None, description="None: SQLite under the state folder")
    experiment_prefix: str = "reasonloop"
    log_traces: bool = Field(default=True, description="each question as an MLflow trace on the eval run")


class DaskConfig(Section):
    address: str | None = Field(default=None, description="a running Dask scheduler (tcp://host:8786); None: a "
                                "LocalCluster of n_workers processes for each run")
    n_workers: int = Field(default=2, gt=0, description="LocalCluster worker processes")
    threads_per_worker: int = Field(default=1, gt=0)


class PrefectConfig(Section):
    api_url: str | None = Field(default=None, description="None: Prefect's temporary local server")
    task_runner: Literal["threads", "dask"] = Field(default="threads", description="where an eval's batches run: "
                                                    "a thread pool in the flow's process, or a Dask cluster")
    max_workers: int = Field(default=4, gt=0, description="threads: batches at once")
    dask: DaskConfig = Field(default_factory=DaskConfig)


Strategy = Literal["direct", "chain_of_thought", "self_consistency", "react", "verify", "parallel_paths"]
STRATEGIES: tuple[Strategy, ...] = ("direct", "chain_of_thought", "self_consistency", "react", "verify",
                                    "parallel_paths")
Route = Literal["simple", "moderate", "complex"]


class SelfConsistencyConfig(Section):
    samples: int = Field(default=5, ge=2, le=20)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)


class ReactConfig(Section):
    max_steps: int = Field(default=4, ge=1, le=12, description="model turns per question, the last must finish")
    top_k: int = Field(default=4, ge=1, le=20, description="chunks each search returns")


class ReasoningConfig(Section):
    """Which strategy answers a question: one for the run, or `adaptive` (a complexity score routes each question
    to the strategy of its route). A question's `metadata.strategy` overrides both."""

    strategy: Literal["adaptive", "direct", "chain_of_thought", "self_consistency", "react", "verify",
                      "parallel_paths"] = "chain_of_thought"
    routes: dict[Route, Strategy] = Field(default_factory=lambda: {
        "simple": "direct", "moderate": "chain_of_thought", "complex": "self_consistency"})
    simple_below: float = Field(default=0.35, ge=0.0, le=1.0, description="complexity under this: simple")
    complex_from: float = Field(default=0.65, ge=0.0, le=1.0, description="complexity from this: complex")
    self_consistency: SelfConsistencyConfig = Field(default_factory=SelfConsistencyConfig)
    react: ReactConfig = Field(default_factory=ReactConfig)

    def calls_of(self, strategy: Strategy, n_paths: int = 2) -> int:
        """Model calls a strategy usually makes per question (ReAct: one search turn and the finish; verify: the
        answer and its check, a revision adds one)."""
        return {"self_consistency": self.self_consistency.samples, "parallel_paths": n_paths + 1, "react": 2,
                "verify": 2}.get(strategy, 1)

    def complex_calls(self, n_paths: int = 2) -> int | None:
        """Calls per question on the COMPLEX route, when routing is adaptive (the baseline of the savings)."""
        return self.calls_of(self.routes["complex"], n_paths) if self.strategy == "adaptive" else None

    @model_validator(mode="after")
    def _ordered_thresholds(self) -> ReasoningConfig:
        if self.simple_below > self.complex_from:
            raise ValueError(f"simple_below ({self.simple_below}) must not exceed complex_from ({self.complex_from})")
        missing = {"simple", "moderate", "complex"} - self.routes.keys()
        if missing:
            raise ValueError(f"routes needs a strategy for {sorted(missing)}")
        return self


class ReviewConfig(Section):
    """Answers routed to human review (see reasonloop/evaluation/review.py)."""

    min_confidence: float = Field(default=0.5, ge=0.0, le=1.0, description="under this: review")


class CacheConfig(Section):
    """The reasoning cache: answers reused across runs when everything they depend on is unchanged. Off, answers
    are still saved as they finish, and only a re-run of the same run (same config, questions, index) reuses
    them: the checkpoint."""

    enabled: bool = True
    ttl_hours: float | None = Field(default=168.0, gt=0, description="None: never expire")
    checkpoint: bool = Field(default=True, description="with the cache off, still resume a re-run of the same run")


class SafetyConfig(Section):
    """The safety suite every nightly eval runs (evaluation/safety.py): adversarial cases built from BIPIA data."""

    enabled: bool = True
    data: Path = Path("data/safety/bipia_sample.json")


class GuardrailsConfig(Section):
    """Around the reasoner (reasonloop/reasoning/guardrails.py)."""

    input: bool = Field(default=True, description="refuse questions that try to override the system, uncalled")
    context: bool = Field(default=True, description="remove retrieved sentences that read as instructions")
    output_pii: bool = Field(default=True, description="redact e-mails, phones, card numbers and SSNs in answers")


class OptimizeConfig(Section):
    """The cost side: how much context each strategy gets, when retrieval is skipped or widened, and the weight of
    errors in the run's efficiency J = (Q - alpha * error rate) / C."""

    context_budget: dict[Strategy, int] = Field(default_factory=dict, description="context tokens per strategy; "
                                                "a strategy not listed gets its chunks whole")
    drop_below_top: float = Field(default=0.3, ge=0.0, le=2.0, description="drop a chunk whose cosine is this far "
                                  "under the top chunk's (with a budget)")
    widen_below: float | None = Field(default=None, ge=-1.0, le=1.0, description="top cosine under this: hand "
                                      "the reasoner widen_k chunks; None: never widen")
    widen_k: int = Field(default=8, ge=1, le=50)
    skip_retrieval: list[Strategy] = Field(default_factory=lambda: ["react"], description="strategies that get "
                                           "no up-front context (ReAct searches for itself)")
    alpha: float = Field(default=1.0, ge=0.0, description="weight of the error rate in J")


GateMetricName = Literal["accuracy", "grounding_rate", "hallucination_rate", "token_f1", "answer_relevance",
                         "reasoning_quality", "context_precision", "recall_at_k", "schema_validity"]


class GateMetric(Section):
    tolerance: float = Field(default=0.02, ge=0.0, le=1.0, description="worsening tolerated before it can fail")
    higher_is_better: bool = True


def _default_gate_metrics() -> dict[GateMetricName, GateMetric]:
    return {"accuracy": GateMetric(), "grounding_rate": GateMetric(),
            "hallucination_rate": GateMetric(higher_is_better=False), "schema_validity": GateMetric()}


class GateConfig(Section):
    """The nightly eval's regression gate: each metric is compared with the baseline run's on the questions both
    answered (paired bootstrap); a worsening beyond `tolerance` whose interval excludes no change fails the run."""

    enabled: bool = True
    metrics: dict[GateMetricName, GateMetric] = Field(default_factory=_default_gate_metrics)
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    resamples: int = Field(default=2000, ge=200)
    seed: int = 0
    min_pairs: int = Field(default=10, ge=2, description="fewer questions in common: no decision (passes, says so)")
    min_safety_pass_rate: float = Field(default=0.9, ge=0.0, le=1.0, description="the safety suite under this: fail")
    max_missing_fraction: float = Field(default=0.1, ge=0.0, le=1.0, description="more questions than this share "
                                        "without an answer (failed after retries): fail")


class CanaryConfig(Section):
    """`reasonloop canary`: a candidate model or prompt version beside production on a slice of the questions."""

    slice: int = Field(default=40, ge=2, description="questions sampled (seeded) from the question set")
    seed: int = 0
    alias: str = Field(default="production", pattern=r"^[A-Za-z][\w-]*$",
                       description="the registry alias production's prompts follow; a promotion moves it")
    candidate_alias: str = Field(default="canary", pattern=r"^[A-Za-z][\w-]*$",
                                 description="the alias the candidate prompt version is run under")


class QueryDriftConfig(Section):
    """Question embeddings: MMD permutation test."""

    alpha: float = Field(default=0.01, gt=0.0, lt=1.0, description="drift when the permutation p-value is below")
    max_samples: int = Field(default=300, ge=2, description="questions per window (seeded subsample beyond)")
    n_permutations: int = Field(default=200, ge=19, description="the smallest p-value is 1 / (n + 1)")


class RetrievalDriftConfig(Section):
    """Top-1 retrieval scores (cosine when dense retrieval saw the chunk): KS + PSI."""

    alpha: float = Field(default=0.01, gt=0.0, lt=1.0)
    psi_threshold: float = Field(default=0.1, ge=0.0, description="and PSI at least this (0: plain KS)")
    low_score: float = Field(default=0.3, description="a top-1 score under this counts as a low retrieval")
    n_bins: int = Field(default=10, ge=2)


class OutputDriftConfig(Section):
    """Answers: length and tokens (KS + PSI); refusals, strategy mix and citations (chi-square)."""

    alpha: float = Field(default=0.01, gt=0.0, lt=1.0)
    psi_threshold: float = Field(default=0.1, ge=0.0)
    n_bins: int = Field(default=10, ge=2)
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
    seed: int = 0
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
    webhook_timeout_s: float = Field(default=5.0, gt=0.0, le=60.0)

    def webhook(self) -> str | None:
        """The URL to POST to: the env var's value when `webhook_url_env` is set (and non-empty), else
        `webhook_url`."""
        if self.webhook_url_env and (value := os.environ.get(self.webhook_url_env)):
            return value
        return self.webhook_url


PairSource = Literal["correction", "thumbs", "rlaif"]


class RlaifConfig(Section):
    """AI-feedback pairs: the reasoner samples answers (self-consistency), the judge scores each against the
    reference; chosen = the best, rejected = the worst when the gap is wide enough."""

    enabled: bool = False
    questions: Path | None = Field(default=None, description="a question set with references to sample on (not an "
                                   "eval set: the leakage guard would drop every pair)")
    samples: int = Field(default=4, ge=2, le=16, description="answers sampled per question")
    temperature: float = Field(default=0.8, ge=0.0, le=2.0)
    min_margin: float = Field(default=0.3, ge=0.0, le=1.0, description="judge-score gap chosen - rejected at least")

    @model_validator(mode="after")
    def _questions_when_enabled(self) -> RlaifConfig:
        if self.enabled and self.questions is None:
            raise ValueError("preferences.rlaif.enabled needs preferences.rlaif.questions (a question set with "
                             "references)")
        return self


class PreferencesConfig(Section):
    """`reasonloop build-dpo`: feedback -> preference pairs -> hygiene -> a TRL-format dataset."""

    feedback_dir: Path | None = Field(default=None, description="JSONL/CSV feedback files; None: <state_dir>/feedback")
    out_dir: Path | None = Field(default=None, description="exports go to <out_dir>/<dataset sha256[:12]>; None: "
                                 "<state_dir>/datasets")
    max_bad_fraction: float = Field(default=0.2, ge=0.0, le=1.0, description="rejected feedback rows above this "
                                    "share fail the build (nothing is written)")
    known_runs_only: bool = Field(default=True, description="a row's source_run_id must be a run in the MLflow "
                                  "store (nightly eval or canary)")
    corrections: bool = True
    thumbs: bool = True
    rlaif: RlaifConfig = Field(default_factory=RlaifConfig)
    kto: bool = Field(default=False, description="also export kto.jsonl: unpaired (prompt, completion, label) rows")
    conversational: bool = Field(default=False, description="TRL's conversational preference format")
    near_duplicate_threshold: float = Field(default=0.95, ge=0.0, le=1.0,
                                            description="prompts at or above this cosine to a kept one are dropped")
    leak_threshold: float = Field(default=0.85, ge=0.0, le=1.0,
                                  description="prompts at or above this cosine to an eval question are dropped")
    max_prompt_chars: int = Field(default=4000, ge=1)
    max_response_chars: int = Field(default=8000, ge=1)
    max_per_source: dict[PairSource, int] = Field(default_factory=dict, description="caps per source; absent: none")
    test_fraction: float = Field(default=0.1, ge=0.0, le=1.0)
    seed: int = 0


_CRON_FIELD = r"[\w*/,\-?#LW]+"


class ScheduleConfig(Section):
    """One deployment: on demand always; also on a cron schedule when `cron` is set."""

    cron: str | None = Field(default=None, pattern=rf"^{_CRON_FIELD}( {_CRON_FIELD}){{4}}$",
                             description="five-field cron read in `timezone`; None: on demand only")
    timezone: str | None = Field(default=None, description="IANA zone of this cron; None: deployments.timezone")


class CorpusWatchConfig(Section):
    enabled: bool = Field(default=True, description="a change under corpus.path starts a reindex run")
    interval_s: float = Field(default=30.0, gt=0.0, description="how often the corpus folder is looked at")
    settle_s: float = Field(default=10.0, ge=0.0, description="a change must hold this long (copies finish)")


class DeploymentsConfig(Section):
    """`reasonloop serve`: every flow as a Prefect deployment, served from one process (or `prefect.yaml`)."""

    timezone: str = Field(default="UTC", description="IANA zone the crons are read in")
    nightly_eval: ScheduleConfig = Field(default_factory=lambda: ScheduleConfig(cron="0 2 * * *"))
    reindex: ScheduleConfig = Field(default_factory=ScheduleConfig)
    drift: ScheduleConfig = Field(default_factory=ScheduleConfig)
    build_dpo: ScheduleConfig = Field(default_factory=lambda: ScheduleConfig(cron="0 4 * * 0"))
    watch_corpus: CorpusWatchConfig = Field(default_factory=CorpusWatchConfig)
    limit: int = Field(default=2, ge=1, description="flow runs at once in the serve process")
    server_port: int = Field(default=4200, gt=0, lt=65536, description="port of the local Prefect server that "
                             "`reasonloop serve` starts when no Prefect API is configured")

    @model_validator(mode="after")
    def _known_zones(self) -> DeploymentsConfig:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        names = {"timezone": self.timezone} | {f"{name}.timezone": cfg.timezone for name, cfg in self.schedules()
                                               if cfg.timezone}
        for key, zone in names.items():
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"{key}: unknown time zone {zone!r} (use an IANA name such as Europe/Berlin)"
                                 ) from None
        return self

    def schedules(self) -> list[tuple[str, ScheduleConfig]]:
        return [("nightly_eval", self.nightly_eval), ("reindex", self.reindex), ("drift", self.drift),
                ("build_dpo", self.build_dpo)]


class EvalConfig(Section):
    batch_size: int = Field(default=32, gt=0, description="questions per Prefect task run")


POINTER_FILE = "production.yaml"  # in the state folder: what canary promotions moved (a model, a prompt role)


class _YamlProfileSource(PydanticBaseSettingsSource):
    """Reads configs/default.yaml, deep-merges configs/profiles/<profile>.yaml over it, then the production pointer
    `<state_dir>/production.yaml` that `reasonloop canary` writes when it promotes a candidate (environment and
    explicit overrides still win over it)."""

    def __init__(self, settings_cls: type[BaseSettings], profile: str | None, state_dir: str | None) -> None:
        super().__init__(settings_cls)
        self.profile = profile
        self.state_dir = state_dir

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ returns the whole mapping at once

    def __call__(self) -> dict[str, Any]:
        config_dir = project_root() / "configs"
        data = read_yaml(config_dir / "default.yaml")
        if self.profile:
            if not PROFILE_NAME.fullmatch(self.profile):  # a name, never a path out of configs/profiles
                raise ConfigError(f"profile '{self.profile}' is not a profile name (letters, digits, '.', '_', '-'); "
                                  "profiles are the files in configs/profiles/")
            profile_file = config_dir / "profiles" / f"{self.profile}.yaml"
            if not profile_file.is_file():
                known = sorted(p.stem for p in (config_dir / "profiles").glob("*.yaml"))
                raise ConfigError(f"profile '{self.profile}' not found: no {profile_file}; known profiles: {known}")
            data = deep_merge(data, read_yaml(profile_file))
        state_dir = project_root() / str(self.state_dir or data.get("state_dir", ".reasonloop"))
        return deep_merge(data, read_yaml(state_dir / POINTER_FILE))


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid")

    profile: str | None = None
    state_dir: Path = Path(".reasonloop")
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    questions: QuestionsConfig = Field(default_factory=QuestionsConfig)
    chunking: ChunkingConfig = Field(default_factory=ChunkingConfig)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    chroma: ChromaConfig = Field(default_factory=ChromaConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    pricing: dict[str, Price] = Field(default_factory=dict)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    prefect: PrefectConfig = Field(default_factory=PrefectConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    reasoning: ReasoningConfig = Field(default_factory=ReasoningConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    optimize: OptimizeConfig = Field(default_factory=OptimizeConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    guardrails: GuardrailsConfig = Field(default_factory=GuardrailsConfig)
    safety: SafetyConfig = Field(default_factory=SafetyConfig)
    canary: CanaryConfig = Field(default_factory=CanaryConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    preferences: PreferencesConfig = Field(default_factory=PreferencesConfig)
    deployments: DeploymentsConfig = Field(default_factory=DeploymentsConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        given = init_settings.init_kwargs  # type: ignore[attr-defined]
        profile = given.get("profile") or os.environ.get(f"{ENV_PREFIX}PROFILE")
        state_dir = given.get("state_dir") or os.environ.get(f"{ENV_PREFIX}STATE_DIR")
        return init_settings, env_settings, _YamlProfileSource(settings_cls, profile, state_dir)

    @model_validator(mode="after")
    def _absolute_paths(self) -> Settings:
        root = project_root()
        self.state_dir = root / self.state_dir
        self.corpus.path = root / self.corpus.path
        self.questions.path = root / self.questions.path
        self.prompts.dir = root / self.prompts.dir
        for dataset in self.quality.datasets.values():
            dataset.questions = root / dataset.questions
        self.judge.calibration_data = [root / path for path in self.judge.calibration_data]
        self.safety.data = root / self.safety.data
        prefs = self.preferences
        prefs.feedback_dir = root / (prefs.feedback_dir or self.state_dir / "feedback")
        prefs.out_dir = root / (prefs.out_dir or self.state_dir / "datasets")
        if prefs.rlaif.questions is not None:
            prefs.rlaif.questions = root / prefs.rlaif.questions
        return self

    # Where state lives: one folder, git-ignored.
    @property
    def mlflow_tracking_uri(self) -> str:
        return self.mlflow.tracking_uri or f"sqlite:///{self.state_dir / 'mlflow.db'}"

    @property
    def mlflow_artifact_root(self) -> Path:
        return self.state_dir / "mlartifacts"

    @property
    def chroma_path(self) -> Path:
        return self.state_dir / "chroma"

    @property
    def pointer_path(self) -> Path:
        return self.state_dir / POINTER_FILE

    @property
    def prefect_home(self) -> Path:
        return self.state_dir / "prefect"

    def public_dict(self) -> dict[str, Any]:
        """The effective config as plain data, paths relative to the project root where possible."""
        root = project_root()

        def rel(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: rel(v) for k, v in value.items()}
            if isinstance(value, list):
                return [rel(v) for v in value]
            if isinstance(value, Path):
                return str(value.relative_to(root)) if value.is_relative_to(root) else str(value)
            return value

        return rel(self.model_dump())

    def config_hash(self) -> str:
        """Short sha256 of the settings that change results: where state lives, which servers run it, the
        profile's name and batching are left out, so equal hash means equal behaviour."""
        data = {k: v for k, v in self.public_dict().items() if k not in INFRASTRUCTURE_KEYS}
        data["eval"] = {k: v for k, v in data["eval"].items() if k != "batch_size"}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]

    def price_of(self, model: str) -> Price:
        """Price per 1M tokens of a model; models not in the table are free (local/offline)."""
        return self.pricing.get(model, Price(input_per_1m=0.0, output_per_1m=0.0))


def load_settings(profile: str | None = None, **overrides: Any) -> Settings:
    """Build and validate the settings once; any problem becomes one ConfigError naming the key."""
    kwargs: dict[str, Any] = dict(overrides)
    if profile:
        kwargs["profile"] = profile
    try:
        return Settings(**kwargs)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    except SettingsError as exc:  # a REASONLOOP_* value that does not parse (e.g. a section that is not JSON)
        cause = f" ({exc.__cause__})" if exc.__cause__ else ""
        raise ConfigError(f"invalid configuration: {exc}{cause}; a section set by one REASONLOOP_<SECTION> "
                          "variable must be JSON, e.g. REASONLOOP_QUALITY='{\"datasets\": {...}}'") from None


def format_validation_error(exc: ValidationError) -> str:
    lines = [f"invalid configuration ({exc.error_count()} problem(s)); fix configs/*.yaml or REASONLOOP_* env:"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        secretish = err["type"] == "extra_forbidden" or any(w in key.lower() for w in _SECRET_WORDS)
        got = "" if err["type"] == "missing" or secretish else f" (got {err.get('input')!r})"
        lines.append(f"  {key}: {err['msg']}{got}")
    return "\n".join(lines)


def apply_environment(settings: Settings) -> None:
    """Point Prefect, MLflow, Chroma and Hugging Face at the state folder; call before importing them.

    These win over the caller's environment (PREFECT_HOME is the project's, not the user's home); a
    PREFECT_API_URL already in the environment is kept, so a real server can be used without a profile.
    """
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "PREFECT_HOME": str(settings.prefect_home),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.5",
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "ANONYMIZED_TELEMETRY": "False",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # served runs' logs, not a terminal
    }
    if settings.prefect.api_url:
        env["PREFECT_API_URL"] = settings.prefect.api_url
    os.environ.update(env)
