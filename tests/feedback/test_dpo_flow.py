"""The DPO dataset build end to end: feedback with good, malformed and unknown-run rows -> pairs -> hygiene ->
export -> MLflow lineage; a second build is byte-identical; too many bad rows write nothing; `feedback add`."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest
from typer.testing import CliRunner

from reasonloop.errors import InputError
from reasonloop.providers import build_tracker
from reasonloop.settings import Settings

from ..conftest import ROOT

pytestmark = pytest.mark.usefixtures("prefect_server")
SAMPLE = ROOT / "data" / "feedback"


def nightly_run(settings: Settings) -> str:
    """A run in the nightly-eval experiment, as the answers' source."""
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    with mlflow.start_run(experiment_id=build_tracker(settings).ensure_experiment("nightly-eval")) as run:
        mlflow.log_params({"prompt.reasoning": "chain_of_thought@v3", "prompt.reasoning.sha256": "ab" * 32})
        return run.info.run_id


def feedback_folder(tmp_path: Path, run_id: str, extra: list[str]) -> Path:
    """The sample feedback with its made-up run ids replaced by a real one, plus `extra` JSONL lines."""
    folder = tmp_path / "feedback"
    shutil.copytree(SAMPLE, folder, ignore=shutil.ignore_patterns("*.md"))
    for path in folder.iterdir():
        text = path.read_text(encoding="utf-8")
        for fake in ("3f1c0a9e5b7d4c2a8e6f1b0d9c7a5e31", "8d2e4f6a1c3b5d7e9f0a2b4c6d8e0f12"):
            text = text.replace(fake, run_id)
        path.write_text(text, encoding="utf-8")
    (folder / "extra.jsonl").write_text("".join(line + "\n" for line in extra), encoding="utf-8")
    return folder


BAD_ROWS = [json.dumps({"question_id": "x1", "question": "Q?", "answer": "A", "rating": 9,
                        "timestamp": "2025-11-22T10:00:00Z"}),
            json.dumps({"question_id": "x2", "question": "Q?", "answer": "A", "rating": "up",
                        "timestamp": "2025-11-22T10:00:00Z", "source_run_id": "0" * 32})]


def test_a_build_exports_trl_pairs_with_lineage_and_is_reproducible(make_settings: Callable[..., Settings],
                                                                   tmp_path: Path) -> None:
    import datasets

    from flows.build_dpo import build_dpo

    first_settings = make_settings()
    run_id = nightly_run(first_settings)
    settings = make_settings(preferences={"feedback_dir": feedback_folder(tmp_path, run_id, BAD_ROWS),
                                          "test_fraction": 0.3, "kto": True})
    report = build_dpo(settings)
    again = build_dpo(settings)
    m = report.metrics
    assert m["n_feedback"] == 10 and m["n_feedback_rejected"] == 2
    assert m["n_leaked"] == 1 and m["removed.eval_leak_exact"] == 1  # the Super Bowl MVP, a question of the set
    assert m["pairs_out.correction"] == 2 and m["n_train"] + m["n_test"] == m["n_pairs_kept"] >= 4
    folders = [p for p in settings.preferences.out_dir.iterdir() if not p.name.startswith(".")]
    assert len(folders) == 1 and again.rows["sha256"] == report.rows["sha256"]  # same inputs, same bytes
    manifest = json.loads((folders[0] / "manifest.json").read_text())
    assert folders[0].name == manifest["dataset_sha256"][:12]

    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    run = client.get_run(report.run_id)
    assert run.data.params["source_run_ids"] == run_id and run.data.tags["dataset_sha256"] == manifest["dataset_sha256"]
    assert run.data.params["prompt_versions"] == "reasoning=chain_of_thought@v3"  # what the answers came from
    [used] = run.inputs.dataset_inputs
    assert used.dataset.name == f"dpo-{manifest['dataset_sha256'][:12]}" and used.tags[0].value == "training"
    artifacts = {a.path for a in client.list_artifacts(report.run_id, "dataset")}
    assert {"dataset/train.jsonl", "dataset/dataset_card.md", "dataset/manifest.json"} <= artifacts
    rejected = client.load_table(report.experiment_id, "feedback/rejected.json", run_ids=[report.run_id])
    assert sorted(rejected["line"]) == [1, 2] and "rating" in rejected["reason"][0]
    assert "unknown" in " ".join(rejected["reason"]) or "no run" in " ".join(rejected["reason"])

    loaded = datasets.load_dataset("json", data_files=str(folders[0] / "train.jsonl"), cache_dir=str(tmp_path / "c"))
    assert sorted(loaded["train"].column_names) == ["chosen", "prompt", "rejected"]
    kto = [json.loads(line) for line in (folders[0] / "kto.jsonl").read_text().splitlines()]
    assert {True, False} == {r["label"] for r in kto} and m["n_kto_rows"] == len(kto)
    assert "Who was the Super Bowl 50 MVP?" not in {r["prompt"] for r in kto}  # the leakage guard holds here too
    assert "O" in {r["completion"] for r in kto if r["label"]}  # a correction is a liked row


def test_too_many_bad_rows_write_nothing(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    from flows.build_dpo import build_dpo

    folder = tmp_path / "feedback"
    folder.mkdir()
    (folder / "bad.jsonl").write_text("\n".join([*BAD_ROWS, "{not json"]) + "\n", encoding="utf-8")
    settings = make_settings(preferences={"feedback_dir": folder, "known_runs_only": False})
    with pytest.raises(InputError, match=r"(?s)2 of 3 inputs are bad .*bad.jsonl:1: field .rating.*:3: malformed"):
        build_dpo(settings)
    assert not settings.preferences.out_dir.exists()


def test_feedback_add_validates_and_appends(make_settings: Callable[..., Settings]) -> None:
    from reasonloop.cli import app

    settings = make_settings()
    run_id = nightly_run(settings)
    base = ["feedback", "add", "--question-id", "q1", "--question", "Who won?", "--answer", "Denver"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("reasonloop.cli.common.load_settings", lambda *a, **k: settings)
        ok = CliRunner().invoke(app, [*base, "--rating", "up", "--run", run_id, "--correct", "The Broncos"])
        bad_rating = CliRunner().invoke(app, [*base, "--rating", "7"])
        unknown_run = CliRunner().invoke(app, [*base, "--rating", "down", "--run", "f" * 32])
    assert ok.exit_code == 0, ok.output
    [row] = [json.loads(line) for line in (settings.preferences.feedback_dir / "cli.jsonl").read_text().splitlines()]
    assert row["corrected_answer"] == "The Broncos" and row["source_run_id"] == run_id
    assert bad_rating.exit_code == 2 and "rating" in bad_rating.output
    assert unknown_run.exit_code == 2 and "no nightly-eval or canary run" in unknown_run.output


def test_ai_feedback_pairs_come_from_judged_samples(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    """RLAIF: a scripted model answers each question right on every other sample; the heuristic judge scores the
    samples against the reference; chosen = a right answer, rejected = a wrong one, vote entropy 1 bit. Questions
    the samples agree on give no pair."""
    from flows.build_dpo import build_dpo
    from flows.reindex import reindex

    from ..conftest import read_jsonl, write_jsonl
    from ..support.openai_server import OpenAIServer, Reply, user_text

    eval_ids = {q["id"] for q in read_jsonl(make_settings().questions.path)}
    others = [q for q in read_jsonl(ROOT / "data" / "questions" / "squad_sample.jsonl") if q["id"] not in eval_ids][:6]
    agreed = others[0]["question"]  # answered right every time: no pair
    calls: dict[str, int] = {}

    def responder(request: dict) -> Reply:
        text = user_text(request)
        question = next(q for q in others if f"<question>{q['question']}</question>" in text)
        calls[question["id"]] = calls.get(question["id"], 0) + 1
        right = question["question"] == agreed or calls[question["id"]] % 2 == 1
        chunk = text.split('<chunk id="')[1].split('"')[0]
        return Reply(content=json.dumps({"answer": question["reference"] if right else "I do not know",
                                         "citations": [chunk], "confidence": 0.6}))

    with OpenAIServer(responder) as server:
        settings = make_settings(
            llm={"provider": "openai", "model": "m", "base_url": server.base_url, "max_retries": 0},
            preferences={"feedback_dir": tmp_path / "none", "test_fraction": 0.0,
                         "rlaif": {"enabled": True, "questions": write_jsonl(tmp_path / "train_q.jsonl", others),
                                   "samples": 4, "min_margin": 0.3}})
        reindex(settings)
        report = build_dpo(settings)
    assert report.metrics["pairs_in.rlaif"] == len(others) - 1 and report.metrics["n_leaked"] == 0
    folder = next(p for p in settings.preferences.out_dir.iterdir() if not p.name.startswith("."))
    rows = [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines()]
    lineage = [json.loads(line) for line in (folder / "lineage.jsonl").read_text().splitlines()]
    assert all(r["rejected"] == "I do not know" and r["chosen"] != r["rejected"] for r in rows)
    assert all(entry["source"] == "rlaif" and entry["meta"]["vote_entropy"] == 1.0 for entry in lineage)
    assert agreed not in {r["prompt"] for r in rows}
    params = mlflow.MlflowClient(settings.mlflow_tracking_uri).get_run(report.run_id).data.params
    assert params["judge.version"] == "heuristic-v5"  # the judge that scored the samples, in the lineage
    assert params["prompt_versions"] == "rlaif=chain_of_thought@v1"  # ... and the template that sampled them
    assert {entry["meta"]["prompt"] for entry in lineage} == {"chain_of_thought@v1"}


@pytest.mark.slow
def test_trls_dpo_trainer_takes_a_step_on_the_export(embedder: object, tmp_path: Path) -> None:
    """The real consumer: TRL's DPOTrainer trains one step on the exported pairs, with a tiny randomly initialised
    Llama built here (no download) and the bundled MiniLM WordPiece tokenizer."""
    import datasets
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from trl import DPOConfig, DPOTrainer

    from reasonloop.feedback.config import PreferencesConfig
    from reasonloop.feedback.exports import export_dataset
    from reasonloop.feedback.preferences import build_dataset, pairs_from_corrections, pairs_from_thumbs
    from reasonloop.feedback.records import load_feedback
    from reasonloop.retrieval.embeddings import bundled_model_path

    records = load_feedback(SAMPLE).records
    dataset = build_dataset([*pairs_from_corrections(records), *pairs_from_thumbs(records)], embedder,  # type: ignore[arg-type]
                            {}, PreferencesConfig(test_fraction=0.0))
    export_dataset(dataset, tmp_path / "dpo")
    train = datasets.load_dataset("json", data_files=str(tmp_path / "dpo" / "train.jsonl"),
                                  cache_dir=str(tmp_path / "cache"))["train"]
    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model_path()))
    tokenizer.eos_token, tokenizer.bos_token = tokenizer.sep_token, tokenizer.cls_token
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id)
    torch.manual_seed(0)
    model, reference = LlamaForCausalLM(config), LlamaForCausalLM(config)
    reference.load_state_dict(model.state_dict())
    before = [p.detach().clone() for p in model.parameters()]
    args = DPOConfig(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=2, report_to=[],
                     use_cpu=True, save_strategy="no", max_length=128, logging_steps=1)
    trainer = DPOTrainer(model=model, ref_model=reference, args=args, train_dataset=train,
                         processing_class=tokenizer)
    result = trainer.train()
    assert train.num_rows == len(dataset.train) >= 4
    assert result.global_step == 1 and abs(result.training_loss - 0.6931) < 1e-3  # policy == reference: log 2
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
