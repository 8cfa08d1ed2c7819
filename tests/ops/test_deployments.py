"""Deployments from config, prefect.yaml kept in step with them, and the corpus watch that starts reindexes."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from reasonloop.cli import app
from reasonloop.errors import ConfigError
from reasonloop.ops.corpus_watch import CorpusWatcher, corpus_fingerprint
from reasonloop.ops.deployments import DEPLOYMENT_NAME, build_deployments, deployment_specs, spec_for
from reasonloop.settings import Settings, load_settings

from ..conftest import ROOT


def test_defaults_schedule_the_nightly_eval_and_a_weekly_dpo_build() -> None:
    specs = {s.key: s for s in deployment_specs(load_settings().deployments)}
    assert (specs["nightly_eval"].cron, specs["nightly_eval"].timezone) == ("0 2 * * *", "UTC")
    assert specs["build_dpo"].cron == "0 4 * * 0"
    assert specs["reindex"].cron is None and specs["drift"].cron is None  # on demand
    assert specs["nightly_eval"].full_name == f"nightly-eval/{DEPLOYMENT_NAME}"
    assert spec_for(load_settings().deployments, "build-dpo").key == "build_dpo"
    with pytest.raises(ConfigError, match="no deployment 'nightly'"):
        spec_for(load_settings().deployments, "nightly")


def test_cron_and_time_zone_come_from_config(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(deployments={"timezone": "Europe/Berlin",
                                          "reindex": {"cron": "30 1 * * 1-5", "timezone": "America/New_York"}})
    specs = {s.key: s for s in deployment_specs(settings.deployments)}
    assert (specs["nightly_eval"].timezone, specs["reindex"].timezone) == ("Europe/Berlin", "America/New_York")
    built = build_deployments(settings.deployments, version="test")  # no server needed
    assert {d.name for d in built} == {DEPLOYMENT_NAME}
    assert {d.flow_name for d in built} == {"nightly-eval", "nightly-eval-live", "live-canary-check", "reindex",
                                                 "drift", "build-dpo"}
    reindex = next(d for d in built if d.entrypoint == "flows.reindex.reindex")
    assert reindex.schedules[0].schedule.cron == "30 1 * * 1-5"
    assert reindex.schedules[0].schedule.timezone == "America/New_York"
    assert reindex.concurrency_limit == 1


@pytest.mark.parametrize(("override", "message"), [
    ({"nightly_eval": {"cron": "every night"}}, "deployments.nightly_eval.cron"),
    ({"timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ({"build_dpo": {"timezone": "Nowhere"}}, "build_dpo.timezone"),
])
def test_bad_schedules_are_config_errors_naming_the_key(make_settings: Callable[..., Settings],
                                                        override: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_settings(deployments=override)


def test_a_cron_with_an_impossible_field_is_refused_when_deployed(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(deployments={"drift": {"cron": "61 * * * *"}})
    with pytest.raises(ConfigError, match="deployments.drift.cron"):
        build_deployments(settings.deployments, "test")


def test_prefect_yaml_declares_the_same_deployments() -> None:
    declared = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))["deployments"]
    by_entrypoint = {d["entrypoint"]: d for d in declared}
    specs = deployment_specs(load_settings().deployments)
    assert set(by_entrypoint) == {s.entrypoint for s in specs}
    for spec in specs:
        d = by_entrypoint[spec.entrypoint]
        assert d["name"] == DEPLOYMENT_NAME and spec.command in d["tags"] and d["description"] == spec.description
        assert d["schedules"] == ([{"cron": spec.cron, "timezone": spec.timezone}] if spec.cron else [])
        assert d["concurrency_limit"]["limit"] == 1 and d["work_pool"]["name"] == "reasonloop"
        path, function = spec.entrypoint.split(":")
        flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), function)
        assert flow.name == spec.flow_name


def test_trigger_without_a_server_says_what_to_start(make_settings: Callable[..., Settings],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings()
    monkeypatch.setenv("REASONLOOP_STATE_DIR", str(settings.state_dir))
    result = CliRunner().invoke(app, ["trigger", "eval"])
    assert result.exit_code == 1 and "reasonloop serve" in result.output


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_change_starts_one_reindex_once_it_has_settled(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.md").write_text("# A\n\none", encoding="utf-8")
    started: list[str] = []
    clock = Clock()
    watcher = CorpusWatcher(corpus, ["*.md"], started.append, interval_s=1, settle_s=10, clock=clock)
    assert not watcher.poll()  # nothing changed
    (corpus / "b.md").write_text("# B\n\ntwo", encoding="utf-8")
    assert not watcher.poll()  # seen, not settled
    clock.now = 6
    (corpus / "c.md").write_text("# C\n\nthree", encoding="utf-8")  # still copying: the wait starts again
    assert not watcher.poll()
    clock.now = 12
    assert not watcher.poll()
    clock.now = 16
    assert watcher.poll() and started == [corpus_fingerprint(corpus, ["*.md"])]
    clock.now = 100
    assert not watcher.poll() and len(started) == 1  # one reindex per change
    (corpus / "ignored.bin").write_bytes(b"\0")  # not a corpus file
    assert not watcher.poll()


def test_a_failed_start_is_tried_again_and_a_reverted_change_is_none(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    doc = corpus / "a.txt"
    doc.write_text("one", encoding="utf-8")
    calls: list[str] = []

    def flaky(fingerprint: str) -> None:
        calls.append(fingerprint)
        if len(calls) == 1:
            raise ConnectionError("server down")

    watcher = CorpusWatcher(corpus, ["*.txt"], flaky, interval_s=1, settle_s=0, clock=Clock())
    original = watcher.seen
    doc.write_text("two!", encoding="utf-8")
    with pytest.raises(ConnectionError):
        watcher.poll()
    assert watcher.poll() and len(calls) == 2  # the change was not lost
    doc.unlink()
    assert corpus_fingerprint(corpus, ["*.txt"]) != original
    assert watcher.poll() and len(calls) == 3  # a removal is a change too
