"""The one factory: embedder, chat model, judges, vector store, index versions and the MLflow tracker, built from
settings. Below it, code takes the sections or the objects it needs; only this module, the flows and the CLI see the
whole `Settings`.

Remote providers are built only when configured (ChatOpenAI raises without a key), and the API key is
read from the environment variable the config names, at build time only. What it builds travels to other
processes (Dask workers) as its recipe (`reasonloop.recipes`): each process rebuilds it once from the settings.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from langchain_core.language_models import BaseChatModel

from reasonloop.errors import ProviderError
from reasonloop.evaluation.judges import EscalatingJudge, HeuristicJudge, Judge, LLMJudge
from reasonloop.evaluation.pairwise import HeuristicPairwiseJudge, LLMPairwiseJudge, PairwiseJudge
from reasonloop.monitoring.tracking import Tracker, git_commit
from reasonloop.paths import project_root
from reasonloop.reasoning.config import PROMPT_ROLES, EndpointConfig
from reasonloop.reasoning.prompts import PromptTemplate, load_prompt
from reasonloop.reasoning.strategies import Reasoner
from reasonloop.reasoning.structured import resolve_method
from reasonloop.recipes import Recipe, rebuild
from reasonloop.redact import redact_url
from reasonloop.retrieval.embeddings import Embedder, load_embedder
from reasonloop.retrieval.index_versions import IndexStore, Manifest
from reasonloop.retrieval.retriever import ChunkRetriever
from reasonloop.settings import Settings

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

    from reasonloop.serving.app import LiveService
    from reasonloop.serving.engine import LiveArm, LiveSetup


def build_embedder(settings: Settings) -> Embedder:
    return load_embedder(settings.embedding, cache_dir=settings.state_dir / "models").with_recipe(
        Recipe(f"{__name__}:_embedder_of", settings))


def _embedder_of(settings: Settings, manifest: Manifest | None) -> Embedder:
    return build_embedder(settings)


def build_openai_chat(cfg: EndpointConfig) -> BaseChatModel:
    """ChatOpenAI against any OpenAI-compatible endpoint; retries/timeouts from config."""
    from langchain_openai import ChatOpenAI

    key = cfg.api_key()
    if key is None and cfg.base_url is None:
        raise ProviderError(
            f"provider 'openai' needs an API key: set the environment variable {cfg.api_key_env}, "
            "or set base_url to a local OpenAI-compatible server"
        )
    return ChatOpenAI(model=cfg.model, base_url=cfg.base_url, api_key=key or "not-needed",  # type: ignore[arg-type]
                      temperature=cfg.temperature, max_tokens=cfg.max_tokens,  # type: ignore[call-arg]
                      timeout=cfg.timeout_s, max_retries=0)  # retries are the endpoint's (llm_calls.Endpoint)


def build_chat_model(settings: Settings, embedder: Embedder) -> BaseChatModel:
    if settings.llm.provider == "openai":
        return build_openai_chat(settings.llm)
    from reasonloop.reasoning.extractive import ExtractiveChatModel

    return ExtractiveChatModel(embedder=embedder, model_name=settings.llm.model,
                               max_sentences=settings.llm.max_sentences)


def build_tracker(settings: Settings) -> Tracker:
    """The MLflow store runs are written to, and the parameters every run of these settings logs."""
    return Tracker(uri=settings.mlflow_tracking_uri, experiment_prefix=settings.mlflow.experiment_prefix,
                   artifact_root=settings.mlflow_artifact_root, params={
                       "config_hash": settings.config_hash(), "profile": settings.profile or "default",
                       "git_commit": git_commit(project_root()), "embedding.model": settings.embedding.model,
                       "embedding.sha256": settings.embedding.sha256, "chroma.mode": settings.chroma.mode,
                       "chroma.collection": settings.chroma.collection,
                       "chunking.chunk_size": settings.chunking.chunk_size,
                       "chunking.chunk_overlap": settings.chunking.chunk_overlap})


def resolve_prompt(settings: Settings, ref: str) -> PromptTemplate:
    """`name`: the file configs/prompts/<name>.yaml; `name@alias`: the version the alias points at in MLflow's
    prompt registry (moving the alias changes what the next run uses, and misses exactly the cached answers of
    the strategies that use this prompt)."""
    if "@" not in ref:
        return load_prompt(settings.prompts.dir, ref)
    import mlflow

    from reasonloop.reasoning.prompt_registry import prompt_from_registry

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    name, alias = ref.split("@", 1)
    return prompt_from_registry(name, alias)


def role_prompts(settings: Settings) -> tuple[dict[str, PromptTemplate], tuple[PromptTemplate, ...]]:
    """The template of each prompt role, and the parallel paths' templates."""
    cfg = settings.prompts
    return ({role: resolve_prompt(settings, getattr(cfg, role)) for role in PROMPT_ROLES},
            tuple(resolve_prompt(settings, ref) for ref in cfg.paths))


def build_reasoner(settings: Settings, embedder: Embedder, index: ServingIndex | None = None) -> Reasoner:
    """The model, the prompts, the strategy and optimization config, the model's price, and (given an index)
    the retriever as ReAct's search tool."""
    prompts, paths = role_prompts(settings)
    reasoner = Reasoner(build_chat_model(settings, embedder), prompts, paths, settings.reasoning,
                        settings.price_of(settings.llm.model), settings.optimize, settings.guardrails,
                        embedder.count_tokens,
                        index.retriever.search if index is not None else None,
                        index.identity if index is not None else "",
                        resolve_method(settings.llm.structured_output, settings.llm.provider))
    return reasoner.with_recipe(Recipe(f"{__name__}:_reasoner_of", settings, index.manifest if index else None))


def _reasoner_of(settings: Settings, manifest: Manifest | None) -> Reasoner:
    index = rebuild(Recipe(f"{__name__}:_index_of", settings, manifest)) if manifest is not None else None
    return build_reasoner(settings, build_embedder(settings), index)


def build_judge(settings: Settings, embedder: Embedder) -> Judge:
    """The configured judge; with `judge.escalate`, behind it the stronger judge its unsure verdicts go to."""
    return _configured_judge(settings, embedder).with_recipe(Recipe(f"{__name__}:_judge_of", settings))


def _judge_of(settings: Settings, manifest: Manifest | None) -> Judge:
    return build_judge(settings, build_embedder(settings))


def _configured_judge(settings: Settings, embedder: Embedder) -> HeuristicJudge | LLMJudge | EscalatingJudge:
    cfg = settings.judge
    first: HeuristicJudge | LLMJudge = HeuristicJudge(embedder, cfg.correctness_threshold, cfg.grounding_threshold)
    if cfg.provider == "openai" or cfg.escalate:
        prompt = resolve_prompt(settings, settings.prompts.judge)
        grounding = resolve_prompt(settings, settings.prompts.judge_grounding)
        if cfg.provider == "openai":
            first = LLMJudge(build_openai_chat(cfg), prompt, cfg.limits(), cfg.votes, settings.price_of(cfg.model),
                             grounding)
        if strong := cfg.escalate:
            return EscalatingJudge(first, LLMJudge(build_openai_chat(strong), prompt, strong.limits(), strong.votes,
                                                   settings.price_of(strong.model), grounding), strong.min_confidence)
    return first


def build_pairwise_judge(settings: Settings, embedder: Embedder) -> PairwiseJudge:
    """The canary's A/B judge on the judge's endpoint: the pairwise rubric prompt, or offline the heuristic judge's
    scores compared."""
    cfg = settings.judge
    if cfg.provider == "openai":
        return LLMPairwiseJudge(build_openai_chat(cfg), resolve_prompt(settings, settings.prompts.pairwise),
                                cfg.limits())
    return HeuristicPairwiseJudge(build_judge(settings, embedder))


@dataclass(frozen=True)
class ServingIndex:
    """One index version and its retriever, resolved once per run so a concurrent reindex cannot switch it
    half-way."""

    manifest: Manifest
    collection: Collection
    retriever: ChunkRetriever

    @property
    def identity(self) -> str:
        """What a search over this index returns depends on: the version's content and weights, the retrieval
        settings and filters (the part of ReAct's cache key that its own searches bring in)."""
        filters = json.dumps(self.retriever.filters, sort_keys=True, default=str)
        return (f"{self.manifest.content_hash}:{self.manifest.encoder}:"
                f"{self.retriever.config.model_dump_json()}:{filters}")


def chroma_of(settings: Settings) -> ClientAPI:
    """The configured Chroma: a server, or the embedded store under the state folder."""
    from reasonloop.retrieval.vectorstore import chroma_client  # chromadb import is slow: only when used

    return chroma_client(settings.chroma, settings.chroma_path)


def index_store_of(settings: Settings) -> IndexStore:
    """The index versions of the configured collection: pointer, manifests, BM25 files and the reindex lock."""
    return IndexStore(settings.state_dir, settings.chroma.collection)


def open_index_version(settings: Settings, embedder: Embedder, manifest: Manifest) -> ServingIndex:
    """The retriever over a given version (the serving one, or one staged but not yet served)."""
    from reasonloop.retrieval.lexical import LexicalIndex
    from reasonloop.retrieval.vectorstore import open_collection

    collection = open_collection(chroma_of(settings), manifest.collection, embedder)
    lexical_dir = index_store_of(settings).lexical_dir(manifest.version)
    lexical = LexicalIndex.load(lexical_dir) if lexical_dir.is_dir() else None
    retriever = ChunkRetriever(collection=collection, embedder=embedder, lexical=lexical, config=settings.retrieval)
    return ServingIndex(manifest, collection,
                        retriever.with_recipe(Recipe(f"{__name__}:_retriever_of", settings, manifest)))


def _index_of(settings: Settings, manifest: Manifest) -> ServingIndex:
    return open_index_version(settings, build_embedder(settings), manifest)


def _retriever_of(settings: Settings, manifest: Manifest) -> ChunkRetriever:
    return rebuild(Recipe(f"{__name__}:_index_of", settings, manifest)).retriever


def open_serving_index(settings: Settings, embedder: Embedder) -> ServingIndex:
    manifest = index_store_of(settings).require_current()
    if manifest.encoder != embedder.identity:
        raise ProviderError(
            f"index {manifest.ref} was embedded by {manifest.embedding_backend} with weights "
            f"{manifest.embedding_sha256[:12]}, the configured encoder is {embedder.backend} with weights "
            f"{embedder.weights_sha256[:12]}: vectors of different encoders do not mix; run `reasonloop reindex`")
    return open_index_version(settings, embedder, manifest)


def live_arm(settings: Settings, embedder: Embedder, index: ServingIndex) -> LiveArm:
    """One arm of the served endpoint: these settings' reasoner over the serving index, under the LLM's limits."""
    from reasonloop.reasoning.llm_calls import endpoint_for
    from reasonloop.serving.engine import LiveArm

    reasoner = build_reasoner(settings, embedder, index)
    return LiveArm(reasoner=reasoner, endpoint=endpoint_for(reasoner.model, settings.llm.limits()),
                   retriever=index.retriever, reasoning=settings.reasoning, optimize=settings.optimize,
                   model=settings.llm.model, index_version=index.manifest.ref)


def live_setup(settings: Settings) -> LiveSetup:
    """Production, and the live canary's candidate while one runs, over one serving index version."""
    from reasonloop.evaluation.live_canary import LIVE_CANARY_FILE, read_canary
    from reasonloop.serving.engine import LiveSetup

    embedder = build_embedder(settings)
    index = open_serving_index(settings, embedder)
    canary = read_canary(settings.state_dir / LIVE_CANARY_FILE)
    arms = {"production": live_arm(settings, embedder, index)}
    if canary is not None:
        arms["candidate"] = live_arm(settings.updated(canary.changes), embedder, index)
    return LiveSetup(arms=arms, canary=canary, version=live_version(settings))  # type: ignore[arg-type]


def live_version(settings: Settings) -> str:
    """What the served setup is built from: the serving index version, the production pointer, the live canary and
    the registry versions the prompt aliases point at. A change in any of them rebuilds the setup."""
    from reasonloop.evaluation.live_canary import LIVE_CANARY_FILE

    files = [index_store_of(settings).pointer_path, settings.pointer_path, settings.state_dir / LIVE_CANARY_FILE]
    parts = [str(path.stat().st_mtime_ns) if path.exists() else "-" for path in files]
    aliased = sorted({ref for ref in (*[getattr(settings.prompts, r) for r in PROMPT_ROLES], *settings.prompts.paths,
                                      settings.prompts.judge) if "@" in ref})
    if aliased:
        tracker = build_tracker(settings)
        try:
            client = tracker.client()
            parts += [f"{ref}={client.get_prompt_version_by_alias(*ref.split('@', 1)).version}" for ref in aliased]
        except Exception:  # noqa: BLE001 - the registry is unreachable: keep serving what is built
            parts.append("registry-unreachable")
    return ";".join(parts)


def probe_live(setup: LiveSetup) -> list[str]:
    """Why the served setup cannot answer (empty: it can): an empty or unreachable index, an unreachable model."""
    import urllib.request

    problems = []
    for name, arm in setup.arms.items():
        try:
            if arm.retriever.collection.count() == 0:
                problems.append(f"{name}: index {arm.index_version} holds no chunks")
        except Exception as exc:  # noqa: BLE001 - any failure to read the index is the problem to report
            problems.append(f"{name}: index {arm.index_version} unreachable ({type(exc).__name__})")
        base = getattr(arm.reasoner.model, "openai_api_base", None)
        if base:
            try:
                with urllib.request.urlopen(f"{base.rstrip('/')}/models", timeout=2.0):
                    pass
            except urllib.error.HTTPError:
                pass  # it answered: reachable (a key may be needed to list models)
            except (OSError, ValueError) as exc:
                problems.append(f"{name}: model endpoint {redact_url(base)} unreachable ({type(exc).__name__})")
    return problems


def build_live_service(settings: Settings, reload: Callable[[], Settings]) -> LiveService:
    """The served endpoint's parts: the engine (rebuilt from `reload()` when production moves), the spool, the
    exporter into `<prefix>-live`, and the metrics."""
    from reasonloop.serving.app import LiveService
    from reasonloop.serving.engine import Engine
    from reasonloop.serving.export import Exporter
    from reasonloop.serving.metrics import ServingMetrics
    from reasonloop.serving.spool import Spool

    cfg = settings.serving
    spool = Spool(settings.state_dir / "serving" / "spool.sqlite")
    engine = Engine(build=lambda: live_setup(reload()), version=lambda: live_version(settings),
                    check_s=cfg.reload_check_s, probe=probe_live)
    return LiveService(engine=engine, spool=spool, metrics=ServingMetrics(spool.backlog), config=cfg,
                       exporter=Exporter(spool, build_tracker(settings), cfg.export_batch, cfg.export_interval_s,
                                         nice=cfg.export_nice, max_backlog=cfg.export_max_backlog))
