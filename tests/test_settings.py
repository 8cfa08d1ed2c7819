from __future__ import annotations

from pathlib import Path

import pytest

from reasonloop.errors import ConfigError
from reasonloop.paths import project_root
from reasonloop.retrieval.config import MINILM_SHA256
from reasonloop.settings import load_settings


def test_defaults_come_from_default_yaml() -> None:
    settings = load_settings()
    assert settings.llm.provider == "extractive"
    assert settings.judge.provider == "heuristic"
    assert settings.embedding.sha256 == MINILM_SHA256
    assert settings.state_dir == project_root() / ".reasonloop"
    assert settings.mlflow_tracking_uri == f"sqlite:///{project_root() / '.reasonloop' / 'mlflow.db'}"
    assert settings.chroma_path.is_relative_to(settings.state_dir)
    assert settings.prefect_home.is_relative_to(settings.state_dir)


def test_profile_is_merged_over_defaults() -> None:
    settings = load_settings("openai")
    assert settings.llm.provider == "openai" and settings.llm.model == "gpt-4o-mini"
    assert settings.llm.max_concurrency == 8  # untouched keys keep their defaults


def test_env_wins_over_yaml_and_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REASONLOOP_LLM__MODEL", "my-model")
    monkeypatch.setenv("REASONLOOP_RETRIEVAL__TOP_K", "7")
    settings = load_settings("openai")
    assert settings.llm.model == "my-model" and settings.retrieval.top_k == 7


def test_invalid_value_names_key_and_allowed_values() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(llm={"provider": "gpt"})
    assert "llm.provider" in str(err.value)
    assert "'extractive' or 'openai'" in str(err.value)
    assert "'gpt'" in str(err.value)


def test_unknown_key_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"retrieval\.topk: Extra inputs are not permitted"):
        load_settings(retrieval={"topk": 3})


def test_invalid_env_value_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REASONLOOP_CHUNKING__CHUNK_SIZE", "-5")
    with pytest.raises(ConfigError, match="chunking.chunk_size"):
        load_settings()


def test_overlap_must_be_below_size() -> None:
    with pytest.raises(ConfigError, match="chunk_overlap .* must be below chunk_size"):
        load_settings(chunking={"chunk_size": 100, "chunk_overlap": 100})


def test_unknown_profile_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"profile 'nope' not found.*openai"):
        load_settings("nope")


def test_broken_yaml_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "default.yaml").write_text("llm: [unclosed\n")
    monkeypatch.setenv("REASONLOOP_ROOT", str(tmp_path))
    with pytest.raises(ConfigError, match="default.yaml: not valid YAML"):
        load_settings()


def test_the_api_key_is_read_from_the_named_variable_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "sk-test-DO-NOT-LEAK-1234")
    settings = load_settings("openai", llm={"api_key_env": "MY_KEY"})
    assert settings.llm.api_key().get_secret_value() == "sk-test-DO-NOT-LEAK-1234"
    assert settings.judge.api_key() is None  # the judge still names OPENAI_API_KEY, which is unset


def test_a_key_pasted_into_the_config_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REASONLOOP_LLM__API_KEY", "sk-LEAKED-123456789")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "llm.api_key: Extra inputs are not permitted" in str(err.value)
    assert "LEAKED" not in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_settings(judge={"api_key_env": "sk-LEAKED-123456789"})
    assert "judge.api_key_env" in str(err.value) and "LEAKED" not in str(err.value)


def test_config_hash_tracks_behaviour_not_infrastructure() -> None:
    default = load_settings().config_hash()
    assert load_settings("local-servers").config_hash() == default  # other servers, same behaviour
    assert load_settings(state_dir="/elsewhere", eval={"batch_size": 3}).config_hash() == default
    assert load_settings("openai").config_hash() != default
    assert load_settings(retrieval={"top_k": 9}).config_hash() != default
