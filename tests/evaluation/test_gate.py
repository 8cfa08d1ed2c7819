"""The regression gate: bootstrap intervals, the paired decision on seeded regressions and on noise only, and the
nightly eval failing (exit 1 through the CLI) against a baseline set with `reasonloop baseline set`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from reasonloop.evaluation.aggregate import intervals
from reasonloop.evaluation.config import GateConfig
from reasonloop.evaluation.gate import RegressionError, compare_runs
from reasonloop.evaluation.stats import mean_ci
from reasonloop.schemas import AnswerRecord, Question, QuestionResult, Verdict
from reasonloop.settings import Settings

from ..conftest import read_jsonl
from ..support.openai_server import OpenAIServer, Reply, user_text

CFG = GateConfig()


def results(correct: list[bool], hallucinated: list[bool] | None = None, tag: str = "") -> list[QuestionResult]:
    hallucinated = hallucinated or [False] * len(correct)
    return [QuestionResult(question=Question(id=f"q{i}", question=f"Question {i}?", reference="r"), retrieved=[],
                           answer=AnswerRecord(question_id=f"q{i}", answer=f"answer {i}{tag}"),
                           verdict=Verdict(correct=ok, grounded_fraction=0.0 if bad else 1.0, hallucinated=bad))
            for i, (ok, bad) in enumerate(zip(correct, hallucinated, strict=True))]


def test_the_interval_of_a_mean_is_seeded_and_covers_it() -> None:
    values = np.random.default_rng(1).binomial(1, 0.7, 200).tolist()
    low, high = mean_ci(values)
    assert low < np.mean(values) < high and (low, high) == mean_ci(values)  # same seed, same interval
    assert 0.1 < high - low < 0.16  # ~ 2 * 1.96 * sqrt(.7 * .3 / 200)
    assert mean_ci([1.0]) is None and mean_ci([0.5, 0.5]) == (0.5, 0.5)


def test_a_seeded_regression_fails_and_names_the_questions() -> None:
    rng = np.random.default_rng(7)
    before = rng.random(200) < 0.8
    after = before.copy()
    flipped = rng.choice(np.flatnonzero(before), 30, replace=False)  # 30 right answers turn wrong: -0.15
    after[flipped] = False
    report = compare_runs("base", results(before.tolist()), results(after.tolist(), tag=" (new)"), CFG)
    accuracy = next(c for c in report.checks if c.metric == "accuracy")
    assert not report.passed and accuracy.regressed and accuracy.worse_by == pytest.approx(0.15)
    assert accuracy.ci_high < 0 and accuracy.n_pairs == 200
    assert {r.question_id for r in report.regressions} == {f"q{i}" for i in flipped}
    first = report.regressions[0]
    assert first.baseline_answer != first.current_answer and first.current_answer.endswith("(new)")


def test_more_hallucination_is_a_regression_too() -> None:
    correct = [True] * 100
    report = compare_runs("base", results(correct), results(correct, [i % 4 == 0 for i in range(100)]), CFG)
    failed = {c.metric for c in report.checks if c.regressed}
    assert failed == {"hallucination_rate", "grounding_rate"}


def test_noise_alone_does_not_fail_the_gate() -> None:
    """100 seeded pairs of runs whose answers are right with the same probability (0.7) but drawn independently:
    at most 5% may fail (the gate needs a drop beyond tolerance AND an interval excluding zero)."""
    cfg = GateConfig(resamples=500)
    failures = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        base, current = rng.random(150) < 0.7, rng.random(150) < 0.7
        failures += not compare_runs("base", results(base.tolist()), results(current.tolist()), cfg).passed
    assert failures <= 5, failures


def test_too_few_shared_questions_or_no_baseline_is_no_decision() -> None:
    report = compare_runs("base", results([True] * 5), results([False] * 5), CFG)
    assert report.passed and all("no decision" in c.note for c in report.checks)
    assert compare_runs(None, [], results([False] * 50), CFG).passed


def test_run_summaries_carry_intervals() -> None:
    found = intervals(results([i % 3 != 0 for i in range(90)]))
    low, high = found["accuracy"]
    assert low < 2 / 3 < high and found["hallucination_rate"] == (0.0, 0.0)


def test_latency_tokens_cost_and_j_get_intervals_too() -> None:
    """J = (accuracy - alpha * error rate) / C resamples a question's accuracy, error and cost together: here the
    cheap questions are the right ones, so J's interval sits around its hand-computed value."""
    def priced(r: QuestionResult, i: int, **more: object) -> QuestionResult:
        # right answers cost 1 ktoken, wrong ones 3: C = 2, J = (0.5 - 0) / 2 = 0.25
        answer = r.answer.model_copy(update={"tokens_in": 1000 if i % 2 == 0 else 3000,
                                             "latency_s": 0.1 * (i % 10 + 1), **more})
        return r.model_copy(update={"answer": answer})

    rows = [priced(r, i) for i, r in enumerate(results([i % 2 == 0 for i in range(60)]))]
    found = intervals(rows)
    assert found["efficiency_j"][0] < 0.25 < found["efficiency_j"][1]
    assert found["tokens_per_query"][0] < 2000 < found["tokens_per_query"][1]
    assert found["latency_p50_s"][0] <= 0.55 <= found["latency_p50_s"][1] <= found["latency_p95_s"][1] <= 1.0
    assert found["cost_per_query_usd"] == (0.0, 0.0)  # nothing priced: C is in ktokens
    rows[0] = priced(rows[0], 0, cache_hit=True)  # a reused answer costs nothing this run and leaves C
    assert intervals(rows)["efficiency_j"] != found["efficiency_j"]


def test_the_nightly_eval_fails_on_a_regression_against_its_baseline(
        make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flows.nightly_eval import nightly_eval
    from flows.reindex import reindex
    from reasonloop.cli import app

    questions = read_jsonl(make_settings().questions.path)
    broken: set[str] = set()

    def responder(request: dict) -> Reply:
        question = next(q for q in questions if f"<question>{q['question']}</question>" in user_text(request))
        answer = "I do not know" if question["id"] in broken else question["reference"]
        return Reply(content=json.dumps({"answer": answer, "citations": [], "confidence": 0.9}))

    with OpenAIServer(responder) as server:
        settings = make_settings(llm={"provider": "openai", "model": "m", "base_url": server.base_url,
                                      "max_retries": 0}, gate={"min_pairs": 5}, cache={"enabled": False},
                                 safety={"enabled": False})  # its scripted server answers only the question set
        reindex(settings)
        first = nightly_eval(settings)
        env = {"REASONLOOP_STATE_DIR": str(settings.state_dir)}
        assert CliRunner().invoke(app, ["baseline", "set", first.run_id], env=env).exit_code == 0
        again = nightly_eval(settings)  # the same answers: passes against the baseline
        broken.update(q["id"] for q in questions[: len(questions) * 2 // 3])
        with pytest.raises(RegressionError, match="accuracy"):
            nightly_eval(settings)
    client = MlflowClient(settings.mlflow_tracking_uri)
    assert client.get_run(again.run_id).data.metrics["gate.passed"] == 1.0
    runs = client.search_runs([first.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)
    failed = runs[0]
    assert failed.data.tags["reasonloop.gate"] == "failed" and failed.data.metrics["gate.accuracy.regressed"] == 1
    assert failed.data.params["gate.baseline_run_id"] == first.run_id
    regressions = json.loads(Path(client.download_artifacts(failed.info.run_id, "eval/regressions.json")).read_text())
    assert {"baseline_answer", "current_answer"} <= set(regressions["columns"])
    shown = CliRunner().invoke(app, ["baseline", "show"], env=env)
    assert first.run_id in shown.output
    refused = CliRunner().invoke(app, ["baseline", "set", "not-a-run"], env=env)
    assert refused.exit_code == 1 and "reasonloop runs" in refused.output


def test_a_template_that_breaks_the_output_format_fails_the_gate() -> None:
    """Schema validity per question: the share of answers whose replies matched their prompt's output schema."""
    def with_validity(valid: list[bool]) -> list[QuestionResult]:
        return [r.model_copy(update={"answer": r.answer.model_copy(update={"schema_valid": ok})})
                for r, ok in zip(results([True] * len(valid)), valid, strict=True)]

    report = compare_runs("base", with_validity([True] * 80), with_validity([i % 5 != 0 for i in range(80)]), CFG)
    schema = next(c for c in report.checks if c.metric == "schema_validity")
    assert not report.passed and schema.regressed and schema.worse_by == pytest.approx(0.2)


def test_schema_validity_counts_malformed_replies_even_when_the_answer_survives() -> None:
    from reasonloop.providers import build_openai_chat
    from reasonloop.reasoning.answering import answer_questions
    from reasonloop.reasoning.config import CallLimits, LLMConfig
    from reasonloop.schemas import RetrievedChunk

    from ..conftest import make_reasoner

    good = json.dumps({"answer": "Denver", "citations": [], "confidence": 0.9})
    replies = iter([good, "I refuse to use JSON", good, good, good])  # one of five samples is malformed
    chunk = RetrievedChunk(chunk_id="c", doc_id="d", text="Denver won.", score=0.9, rank=1)
    with OpenAIServer(lambda r: Reply(content=next(replies))) as server:
        model = build_openai_chat(LLMConfig(provider="openai", model="m", base_url=server.base_url))
        question = Question(id="q", question="Who won?", reference="Denver")
        [record] = answer_questions([question], [[chunk]], make_reasoner(model, strategy="self_consistency"),
                                       CallLimits(1))
    assert record.error is None and record.schema_valid is False and record.confidence == pytest.approx(0.8)
