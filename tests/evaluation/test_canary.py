"""Canary: candidates parsed, pairwise judging in both orders, and the flow promoting a better candidate (model:
the production pointer; prompt: the registry alias) or leaving production as it was, against a scripted server."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from reasonloop.errors import ConfigError
from reasonloop.evaluation.canary import parse_candidate, pointer_update, sample_slice, write_pointer
from reasonloop.evaluation.pairwise import PairItem, compare_both_orders, pairwise_metrics
from reasonloop.schemas import AnswerRecord, Question
from reasonloop.settings import Settings, load_settings
from reasonloop.text import normalize_answer

from ..conftest import read_jsonl
from ..support.openai_server import OpenAIServer, Reply, system_text, user_text

pytestmark = pytest.mark.usefixtures("prefect_server")

QUESTIONS = [Question(id=f"q{i}", question=f"Question {i}?", reference=f"answer {i}") for i in range(4)]


def test_candidates_are_models_or_prompt_versions_used_by_a_role(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    prompt = parse_candidate("chain_of_thought@v2", settings.prompts)
    assert (prompt.kind, prompt.prompt, prompt.version, prompt.roles) == ("prompt", "chain_of_thought", 2,
                                                                          ["reasoning"])
    assert parse_candidate("path_analytical@3", settings.prompts).roles == ["paths.0"]
    assert parse_candidate("gpt-4.1-mini", settings.prompts).model == "gpt-4.1-mini"
    with pytest.raises(ConfigError, match="no llm prompt role uses .judge_answer."):
        parse_candidate("judge_answer@v3", settings.prompts)
    with pytest.raises(ConfigError, match="give a model name"):
        parse_candidate("two words", settings.prompts)


def test_a_promotion_pointer_is_merged_over_the_config(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    state = {"state_dir": settings.state_dir}
    alias = settings.canary.alias
    assert pointer_update(settings.prompts, parse_candidate("gpt-x", settings.prompts), alias) == \
        {"llm": {"model": "gpt-x"}}
    prompt = parse_candidate("chain_of_thought@v2", settings.prompts)
    assert pointer_update(settings.prompts, prompt, alias) == {"prompts": {"reasoning": "chain_of_thought@production"}}
    write_pointer(settings.pointer_path, {"llm": {"model": "gpt-x"}})
    write_pointer(settings.pointer_path, pointer_update(settings.prompts, prompt, alias))
    promoted = load_settings(**state)
    assert promoted.llm.model == "gpt-x" and promoted.prompts.reasoning == "chain_of_thought@production"
    assert load_settings(**state, llm={"model": "explicit"}).llm.model == "explicit"  # overrides still win
    assert pointer_update(promoted.prompts, prompt, alias) == {}  # roles follow the alias: moving it is the promotion


def test_the_slice_is_seeded_and_keeps_file_order() -> None:
    many = [Question(id=f"q{i}", question="?", reference="r") for i in range(50)]
    picked = sample_slice(many, 10, seed=3)
    assert picked == sample_slice(many, 10, seed=3) != sample_slice(many, 10, seed=4)
    assert [q.id for q in picked] == sorted((q.id for q in picked), key=lambda i: int(i[1:]))
    assert sample_slice(many[:5], 10, seed=0) == many[:5]


class ScriptedPairwise:
    """Prefers the answer that contains the reference, or (biased) always the one shown first."""

    version = "scripted"

    def __init__(self, biased: bool = False) -> None:
        self.biased = biased

    def prefer(self, items: list[PairItem]) -> list[str]:
        def right(answer: AnswerRecord, q: Question) -> bool:
            return q.reference in answer.answer

        return ["A" if self.biased or right(i.a, i.question) and not right(i.b, i.question)
                else "B" if right(i.b, i.question) and not right(i.a, i.question) else "tie" for i in items]


def answers(good: set[int]) -> list[AnswerRecord]:
    return [AnswerRecord(question_id=q.id, answer=q.reference if i in good else "no idea")
            for i, q in enumerate(QUESTIONS)]


def test_pairwise_judging_in_both_orders_cancels_position_bias() -> None:
    production, candidate = answers({0, 1}), answers({0, 2, 3})
    fair = compare_both_orders(ScriptedPairwise(), QUESTIONS, [[]] * 4, production, candidate)
    assert [o.winner for o in fair] == ["tie", "production", "candidate", "candidate"]
    assert all(o.consistent for o in fair)
    biased = compare_both_orders(ScriptedPairwise(biased=True), QUESTIONS, [[]] * 4, production, candidate)
    assert [o.winner for o in biased] == ["tie"] * 4  # "always A" flips with the order: no winner
    metrics = pairwise_metrics(biased)
    assert metrics["pairwise.position_inconsistency"] == 1.0 and metrics["pairwise.candidate_win_rate"] == 0.0
    failed = [a.model_copy(update={"answer": "", "error": "boom"}) if i == 3 else a for i, a in enumerate(production)]
    assert compare_both_orders(ScriptedPairwise(), QUESTIONS, [[]] * 4, failed, candidate)[3].winner == "candidate"


def responder_for(questions: list[dict], right: Callable[[dict, dict], bool]) -> Callable[[dict], Reply]:
    """Reasoner replies right or wrong per `right(request, question)`; the judges check against the reference."""
    def respond(request: dict) -> Reply:
        system, text = system_text(request), user_text(request)
        reference = text.split("<reference>")[1].split("</reference>")[0] if "<reference>" in text else ""

        def ok(tag: str) -> bool:
            return normalize_answer(reference) in normalize_answer(text.split(f"<{tag}>")[1].split(f"</{tag}>")[0])

        if "comparing two candidate answers" in system:
            a, b = ok("answer_a"), ok("answer_b")
            return Reply(content=json.dumps({"winner": "A" if a > b else "B" if b > a else "tie"}))
        if "strict evaluator" in system:
            return Reply(content=json.dumps({"correct": ok("answer"), "score": float(ok("answer")), "claims": []}))
        question = next(q for q in questions if f"<question>{q['question']}</question>" in text)
        chunk_id = text.split('<chunk id="')[1].split('"')[0]
        answer = question["reference"] if right(request, question) else "I do not know"
        return Reply(content=json.dumps({"answer": answer, "citations": [chunk_id], "confidence": 0.8,
                                         "reasoning": {"steps": ["looked it up"]}}))
    return respond


def canary_settings(make_settings: Callable[..., Settings], server: OpenAIServer, **more: object) -> Settings:
    endpoint = {"provider": "openai", "model": "test-model", "base_url": server.base_url, "max_retries": 0}
    return make_settings(llm=endpoint, judge={**endpoint, "model": "judge"}, safety={"enabled": False}, **more)


def test_a_better_model_is_promoted_through_the_pointer(make_settings: Callable[..., Settings]) -> None:
    from mlflow import MlflowClient
    from typer.testing import CliRunner

    from flows.reindex import reindex
    from reasonloop.cli import app

    questions = read_jsonl(make_settings().questions.path)
    wrong = {q["id"] for q in questions[::3]}

    def right(request: dict, question: dict) -> bool:
        return request["model"] == "good-model" or request["model"] == "test-model" and question["id"] not in wrong

    with OpenAIServer(responder_for(questions, right)) as server:
        settings = canary_settings(make_settings, server)
        reindex(settings)
        with pytest.MonkeyPatch.context() as patch:  # the CLI loads settings itself: hand it these
            patch.setattr("reasonloop.cli.common.load_settings", lambda *a, **k: settings)
            rejected = CliRunner().invoke(app, ["canary", "run", "--candidate", "bad-model"])
            promoted = CliRunner().invoke(app, ["canary", "run", "--candidate", "good-model"])
    assert rejected.exit_code == 1 and "rejected: production unchanged" in rejected.output, rejected.output
    assert "accuracy regressed" in rejected.output
    assert promoted.exit_code == 0 and "promoted" in promoted.output, promoted.output
    assert yaml.safe_load(settings.pointer_path.read_text()) == {"llm": {"model": "good-model"}}

    client = MlflowClient(settings.mlflow_tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("reasonloop-canary").experiment_id],
                              order_by=["attributes.start_time ASC"])
    assert [r.data.tags["reasonloop.canary"] for r in runs] == ["rejected", "promoted"]
    good = runs[1].data
    assert good.params["candidate"] == "good-model" and good.params["candidate.llm.model"] == "good-model"
    assert good.metrics["candidate.accuracy"] == 1.0 > good.metrics["production.accuracy"]
    assert good.metrics["pairwise.candidate_win_rate"] == pytest.approx(len(wrong) / len(questions))
    assert good.metrics["pairwise.production_win_rate"] == 0.0 and good.metrics["gate.passed"] == 1.0
    table = client.load_table(runs[1].info.experiment_id, "canary/questions.json", run_ids=[runs[1].info.run_id])
    assert len(table) == len(questions) and set(table["pairwise_winner"]) == {"candidate", "tie"}


def test_a_prompt_version_moves_the_production_alias_only_when_it_passes(
        make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    import mlflow

    from flows.canary import canary
    from flows.reindex import reindex
    from reasonloop.reasoning.prompt_registry import register_prompt, set_prompt_alias
    from reasonloop.reasoning.prompts import load_prompt

    prompts = shutil.copytree(make_settings().prompts.dir, tmp_path / "prompts")
    questions = read_jsonl(make_settings().questions.path)
    wrong = {q["id"] for q in questions[::3]}

    def right(request: dict, question: dict) -> bool:
        if "MARKER-GOOD" in system_text(request):
            return True
        return "MARKER-BAD" not in system_text(request) and question["id"] not in wrong

    def release(version: int, marker: str) -> None:
        data = yaml.safe_load((prompts / "chain_of_thought.yaml").read_text())
        data |= {"version": version, "system": data["system"] + f"\n{marker}\n"}
        (prompts / "chain_of_thought.yaml").write_text(yaml.safe_dump(data))

    def production_version() -> str:
        return mlflow.genai.load_prompt("prompts:/chain_of_thought@production").tags["file_version"]

    with OpenAIServer(responder_for(questions, right)) as server:
        settings = canary_settings(make_settings, server,
                                   prompts={"dir": prompts, "reasoning": "chain_of_thought@production"})
        mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
        register_prompt(load_prompt(prompts, "chain_of_thought"))
        set_prompt_alias("chain_of_thought", "production", 1)
        reindex(settings)
        release(2, "MARKER-BAD")
        rejected = canary("chain_of_thought@v2", settings)
        assert production_version() == "1"
        release(3, "MARKER-GOOD")
        promoted = canary("chain_of_thought@v3", settings)
    assert rejected.metrics["promoted"] == 0.0 and rejected.metrics["gate.accuracy.regressed"] == 1.0
    assert promoted.metrics["promoted"] == 1.0 and production_version() == "3"
    assert not settings.pointer_path.exists()  # the role already follows the alias: nothing else to move
    run = mlflow.MlflowClient().get_run(promoted.run_id)
    assert run.data.params["production.prompt.reasoning"] == "chain_of_thought@v1"
    assert run.data.params["candidate.prompt.reasoning"] == "chain_of_thought@v3"
