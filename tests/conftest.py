"""Test setup: an isolated Prefect home, no internet, one Prefect test server, one shared embedder."""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Before anything imports Prefect: its settings are read at import time.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="reasonloop-tests-"))
for _key in [k for k in os.environ if k.startswith(("REASONLOOP_", "PREFECT_", "MLFLOW_"))] + ["OPENAI_API_KEY"]:
    os.environ.pop(_key, None)
os.environ.update({
    "PREFECT_HOME": str(_SESSION_DIR / "prefect"),
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "GX_ANALYTICS_ENABLED": "false",
    "ANONYMIZED_TELEMETRY": "False",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
})

import pytest  # noqa: E402

from reasonloop.settings import Settings, load_settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CORPUS = ROOT / "data" / "corpus" / "squad_sample.jsonl"
SAMPLE_QUESTIONS = ROOT / "data" / "questions" / "squad_sample.jsonl"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture(autouse=True, scope="session")
def no_internet() -> Iterator[None]:
    """Any connection beyond loopback fails the test that made it."""
    real = (socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo)

    def check(family: int, host: Any) -> None:
        if family in (socket.AF_INET, socket.AF_INET6, 0) and host not in LOOPBACK and host is not None:
            raise RuntimeError(f"test tried to reach {host}: tests must stay offline")

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            check(self.family, address[0])
        return real[0](self, address)

    def connect_ex(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            check(self.family, address[0])
        return real[1](self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        check(0, host.decode() if isinstance(host, bytes) else host)
        return real[2](host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo  # type: ignore[method-assign,assignment]
    yield
    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = real  # type: ignore[method-assign,assignment]


@pytest.fixture(autouse=True)
def restore_environ() -> Iterator[None]:
    """CLI commands point Prefect, MLflow and Hugging Face at their state folder through os.environ
    (`apply_environment`): each test gets the environment back as it was."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
    if "mlflow" in sys.modules:  # and MLflow's global tracking URI back to MLFLOW_TRACKING_URI, as in a new process
        sys.modules["mlflow"].set_tracking_uri(None)


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    # no heartbeat thread: Prefect joins it for up to 1 s at the end of every flow run
    with prefect_test_harness(server_startup_timeout=120), \
            temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


@pytest.fixture(scope="session")
def embedder() -> Any:
    from reasonloop.retrieval.config import EmbeddingConfig
    from reasonloop.retrieval.embeddings import load_embedder

    return load_embedder(EmbeddingConfig())


def make_reasoner(model: Any, price: Any = None, search: Any = None, optimize: Any = None, **reasoning: Any) -> Any:
    """A Reasoner over `model` with the project's prompts; `reasoning` overrides ReasoningConfig fields."""
    from reasonloop.providers import role_prompts
    from reasonloop.reasoning.config import OptimizeConfig, Price, ReasoningConfig
    from reasonloop.reasoning.strategies import Reasoner

    prompts, paths = role_prompts(load_settings())
    return Reasoner(model, prompts, paths, ReasoningConfig(**reasoning),
                    price or Price(input_per_1m=0.0, output_per_1m=0.0), optimize or OptimizeConfig(),
                    search=search, search_version="test-index" if search else "")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def tiny_data(tmp_path: Path) -> tuple[Path, Path]:
    """12 SQuAD paragraphs (two articles) and the sample questions about them."""
    corpus = read_jsonl(SAMPLE_CORPUS)[:12]
    ids = {r["id"] for r in corpus}
    questions = [q for q in read_jsonl(SAMPLE_QUESTIONS) if set(q["gold_doc_ids"]) <= ids]
    return (write_jsonl(tmp_path / "corpus" / "tiny.jsonl", corpus).parent,
            write_jsonl(tmp_path / "questions.jsonl", questions))


@pytest.fixture
def make_settings(tmp_path: Path, tiny_data: tuple[Path, Path]) -> Callable[..., Settings]:
    """Settings with state under tmp_path and the tiny corpus; keyword overrides are merged in."""
    corpus_dir, questions = tiny_data

    def build(**overrides: Any) -> Settings:
        base: dict[str, Any] = {"state_dir": tmp_path / "state", "corpus": {"path": corpus_dir},
                                "questions": {"path": questions}, "eval": {"batch_size": 8},
                                "quality": {"datasets": {"squad_sample": {"questions": questions,
                                                                          "corpus": corpus_dir}}}}
        for key, value in overrides.items():
            base[key] = {**base[key], **value} if isinstance(value, dict) and isinstance(base.get(key), dict) else value
        return load_settings(**base)

    return build


@pytest.fixture(scope="module")
def zygote(prefect_server: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The warm process that forks flow runs (tests/support/zygote.py), pointed at the session's Prefect test
    server; one per test module."""
    from prefect.settings import PREFECT_API_URL

    from .support.servers import reasonloop_env
    from .support.zygote import Zygote

    env = {**reasonloop_env(tmp_path_factory.mktemp("zygote") / "unused"),
           "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    warm = Zygote(env, tmp_path_factory.mktemp("zygote-log") / "zygote.log")
    yield warm
    warm.close()
