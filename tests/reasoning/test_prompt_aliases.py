"""Prompt aliases in MLflow's prompt registry: a config naming `name@alias` uses the version the alias points at,
and moving the alias misses exactly the cached answers of the strategies that use that prompt."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest
import yaml
from typer.testing import CliRunner

from reasonloop.cli import app
from reasonloop.errors import PromptError
from reasonloop.providers import build_openai_chat, role_prompts
from reasonloop.reasoning.answer_store import RecordStore
from reasonloop.reasoning.answering import answer_questions
from reasonloop.reasoning.config import CallLimits, LLMConfig, Price
from reasonloop.reasoning.prompt_registry import prompt_from_registry, register_prompt, set_prompt_alias
from reasonloop.reasoning.prompts import LOCK_FILE, PromptTemplate, load_prompt
from reasonloop.reasoning.strategies import Reasoner
from reasonloop.schemas import Question, RetrievedChunk
from reasonloop.settings import Settings

from ..conftest import ROOT
from ..support.openai_server import OpenAIServer, Reply, system_text

CHUNK = RetrievedChunk(chunk_id="d::0::aa", doc_id="d", rank=1, score=0.9, text="The Denver Broncos won.")
ANSWER = '{"answer": "Denver Broncos", "citations": ["d::0::aa"], "confidence": 0.9}'
V2_RULE = "State the answer in five words or fewer."
QUESTIONS = [Question(id=f"{strategy}-{i}", question=f"Who won game {i}?", reference="Denver",
                      metadata={"strategy": strategy}) for strategy in ("direct", "chain_of_thought") for i in range(2)]


@pytest.fixture
def prompts_dir(tmp_path: Path, make_settings: Callable[..., Settings]) -> Path:
    """A copy of the prompts folder with chain_of_thought v1 and v2 both registered, on a fresh tracking store."""
    folder = tmp_path / "prompts"
    shutil.copytree(ROOT / "configs" / "prompts", folder)
    mlflow.set_tracking_uri(make_settings().mlflow_tracking_uri)
    register_prompt(load_prompt(folder, "chain_of_thought"))
    path = folder / "chain_of_thought.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["version"] = 2
    data["system"] = data["system"].replace("then answer concisely.", f"then answer concisely. {V2_RULE}")
    v2 = PromptTemplate.model_validate(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    with (folder / LOCK_FILE).open("a", encoding="utf-8") as lock:
        lock.write(f"{v2.ref} {v2.sha256}\n")
    register_prompt(load_prompt(folder, "chain_of_thought"))
    return folder


def test_an_alias_resolves_to_the_registered_text(prompts_dir: Path) -> None:
    set_prompt_alias("chain_of_thought", "production", 1)
    v1 = prompt_from_registry("chain_of_thought", "production")
    assert v1.ref == "chain_of_thought@v1" and V2_RULE not in v1.system
    assert v1.sha256 == load_prompt(ROOT / "configs" / "prompts", "chain_of_thought").sha256
    set_prompt_alias("chain_of_thought", "production", 2)
    assert prompt_from_registry("chain_of_thought", "production").ref == "chain_of_thought@v2"
    with pytest.raises(PromptError, match="no registered v7"):
        set_prompt_alias("chain_of_thought", "production", 7)
    with pytest.raises(PromptError, match="reasonloop prompt alias"):
        prompt_from_registry("chain_of_thought", "staging")


def test_moving_the_alias_misses_exactly_the_answers_of_its_prompt(
        prompts_dir: Path, tmp_path: Path, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(prompts={"dir": prompts_dir, "reasoning": "chain_of_thought@production"})
    store = RecordStore(tmp_path / "answers.sqlite", run="r", shared=True)

    def run(server: OpenAIServer) -> None:
        model = build_openai_chat(LLMConfig(provider="openai", model="m", base_url=server.base_url, max_retries=0))
        prompts, paths = role_prompts(settings)  # resolved at each run's start, as the flow does
        reasoner = Reasoner(model, prompts, paths, settings.reasoning, Price(input_per_1m=0, output_per_1m=0))
        answer_questions(QUESTIONS, [[CHUNK]] * len(QUESTIONS), reasoner, CallLimits(4), store)

    with OpenAIServer(lambda r: Reply(content=ANSWER)) as server:
        set_prompt_alias("chain_of_thought", "production", 1)
        run(server)
        run(server)
        assert len(server.calls) == 4  # the repeat is all cache hits
        set_prompt_alias("chain_of_thought", "production", 2)
        run(server)
        assert len(server.calls) == 6  # only the two chain-of-thought questions, none of the direct ones
        assert all(V2_RULE in system_text(call) for call in server.calls[4:])


def test_the_cli_registers_templates_and_moves_aliases(prompts_dir: Path, tmp_path: Path) -> None:
    env = {"REASONLOOP_STATE_DIR": str(tmp_path / "state"), "REASONLOOP_PROMPTS__DIR": str(prompts_dir)}
    registered = CliRunner().invoke(app, ["prompt", "register"], env=env)
    assert registered.exit_code == 0, registered.output
    assert "chain_of_thought@v2" in registered.output and "react_step@v1" in registered.output
    moved = CliRunner().invoke(app, ["prompt", "alias", "chain_of_thought", "production", "1"], env=env)
    assert moved.exit_code == 0 and "chain_of_thought@production -> chain_of_thought@v1" in moved.output
    missing = CliRunner().invoke(app, ["prompt", "alias", "chain_of_thought", "production", "9"], env=env)
    assert missing.exit_code == 1 and "no registered v9" in missing.output
