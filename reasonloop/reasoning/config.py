"""The reasoning layer's configuration: endpoints and their limits, prompts, strategies and adaptive depth, the
cost levers, the answer cache and the guardrails.

Each section is a pydantic model `Settings` composes (`reasonloop/settings.py`); code of this layer takes the
section it needs, never the whole `Settings`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from reasonloop.schemas import Section


@dataclass(frozen=True)
class CallLimits:
    """How hard one endpoint may be called: calls in flight, call starts and tokens per minute (None: unpaced)."""

    max_concurrency: int
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    max_retries: int = 0  # transient failures retried per call (reasonloop/reasoning/llm_calls.py)


class EndpointConfig(Section):
    """An OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp server)."""

    model: str = Field(description="the model name the endpoint serves")
    base_url: str | None = Field(default=None, description="an OpenAI-compatible endpoint; credentials never go in it")
    api_key_env: str = Field(default="OPENAI_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                             description="the NAME of the env var holding the key, never the key")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="sampling temperature")
    max_tokens: int = Field(default=800, gt=0, description="the reply's token limit")
    timeout_s: float = Field(default=60.0, gt=0, description="per call")
    max_retries: int = Field(default=2, ge=0, description="retries per call on transient failures (408, 409, 429 "
                             "honouring Retry-After, 5xx, resets, timeouts, bodies that are not JSON)")
    max_concurrency: int = Field(default=8, gt=0, description="calls in flight per endpoint, across the process")
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
    model: str = Field(default="extractive-minilm", description="the model name (extractive-minilm: the offline "
                       "extractive reasoner, not a language model)")
    max_sentences: int = Field(default=1, gt=0, description="extractive: sentences quoted in the answer")
    structured_output: Literal["auto", "json_schema", "function_calling", "prompt"] = Field(
        default="auto", description="how the reply's JSON schema is asked for: json_schema (response_format), "
        "function_calling (a forced tool call), prompt (the prompt's instructions only), auto (json_schema for "
        "openai, prompt for the offline reasoner); an endpoint that refuses it is asked in prompt mode")


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
    judge: str = Field(default="judge_answer", description="the LLM judge's rubric")
    judge_grounding: str = Field(default="judge_grounding", description="the LLM judge's rubric for answers "
                                 "without a reference (live traffic): grounding, relevance, reasoning")
    pairwise: str = "judge_pairwise"   # the canary's A/B comparison (LLM judge only)


class Price(Section):
    input_per_1m: float = Field(ge=0.0, description="USD per million prompt tokens")
    output_per_1m: float = Field(ge=0.0, description="USD per million completion tokens")

    def cost_usd(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input_per_1m + tokens_out * self.output_per_1m) / 1_000_000


Strategy = Literal["direct", "chain_of_thought", "self_consistency", "react", "verify", "parallel_paths"]


STRATEGIES: tuple[Strategy, ...] = ("direct", "chain_of_thought", "self_consistency", "react", "verify",
                                    "parallel_paths")


Route = Literal["simple", "moderate", "complex"]


class SelfConsistencyConfig(Section):
    samples: int = Field(default=5, ge=2, le=20, description="chain-of-thought samples per question")
    temperature: float = Field(default=0.7, ge=0.0, le=2.0, description="their sampling temperature")


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


class CacheConfig(Section):
    """The reasoning cache: answers reused across runs when everything they depend on is unchanged. Off, answers
    are still saved as they finish, and only a re-run of the same run (same config, questions, index) reuses
    them: the checkpoint."""

    enabled: bool = True
    ttl_hours: float | None = Field(default=168.0, gt=0, description="None: never expire")
    checkpoint: bool = Field(default=True, description="with the cache off, still resume a re-run of the same run")


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
    widen_k: int = Field(default=8, ge=1, le=50, description="chunks handed over when retrieval is weak")
    skip_retrieval: list[Strategy] = Field(default_factory=lambda: ["react"], description="strategies that get "
                                           "no up-front context (ReAct searches for itself)")
    alpha: float = Field(default=1.0, ge=0.0, description="weight of the error rate in J")
