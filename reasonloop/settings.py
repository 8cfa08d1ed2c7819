"""The one settings object: `configs/default.yaml` < `configs/profiles/<profile>.yaml` < the production pointer
`<state_dir>/production.yaml` < REASONLOOP_* env, validated once.

Each layer owns its sections (`reasonloop/<layer>/config.py`); `Settings` composes them and this module loads and
merges them. Only flows, the CLI and the provider factory see the whole `Settings`: everything else takes the section
it uses. Relative paths resolve against the project root. Secrets are never fields: the config names the environment
variable that holds an API key, and `api_key()` reads it only when a provider is built, so settings can be logged,
hashed and shown without leaking anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from reasonloop.errors import ConfigError
from reasonloop.evaluation.config import (
    CanaryConfig,
    EvalConfig,
    GateConfig,
    JudgeConfig,
    LiveConfig,
    QualityConfig,
    QuestionsConfig,
    ReviewConfig,
    SafetyConfig,
)
from reasonloop.feedback.config import PreferencesConfig
from reasonloop.monitoring.config import DriftConfig, MlflowConfig
from reasonloop.ops.config import DeploymentsConfig, PrefectConfig
from reasonloop.paths import project_root, shown
from reasonloop.reasoning.config import (
    CacheConfig,
    GuardrailsConfig,
    LLMConfig,
    OptimizeConfig,
    Price,
    PromptsConfig,
    ReasoningConfig,
)
from reasonloop.retrieval.config import (
    ChromaConfig,
    ChunkingConfig,
    CorpusConfig,
    EmbeddingConfig,
    IndexConfig,
    RetrievalConfig,
)
from reasonloop.serving.config import ServingConfig
from reasonloop.yaml_files import deep_merge, read_yaml

ENV_PREFIX = "REASONLOOP_"
PROFILE_NAME = re.compile(r"[A-Za-z0-9][\w.-]*")
INFRASTRUCTURE_KEYS = {"profile", "state_dir", "prefect", "mlflow", "chroma", "drift", "preferences",
                       "deployments", "serving"}  # no eval result
_SECRET_WORDS = ("key", "secret", "token", "password", "url")  # a URL may carry a token: never echoed in errors
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
    serving: ServingConfig = Field(default_factory=ServingConfig)
    live: LiveConfig = Field(default_factory=LiveConfig)

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
        def rel(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: rel(v) for k, v in value.items()}
            if isinstance(value, list):
                return [rel(v) for v in value]
            return shown(value) if isinstance(value, Path) else value

        return rel(self.model_dump())

    def config_hash(self) -> str:
        """Short sha256 of the settings that change results: where state lives, which servers run it, the
        profile's name and batching are left out, so equal hash means equal behaviour."""
        data = {k: v for k, v in self.public_dict().items() if k not in INFRASTRUCTURE_KEYS}
        data["eval"] = {k: v for k, v in data["eval"].items() if k != "batch_size"}
        data["index"] = {k: v for k, v in data["index"].items() if k != "batch_bytes"}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]

    def updated(self, sections: dict[str, dict[str, Any]]) -> Settings:
        """These settings with some sections' fields replaced (a canary's candidate, AI feedback's sampling)."""
        return self.model_copy(update={name: getattr(self, name).model_copy(update=fields)
                                       for name, fields in sections.items()})

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
