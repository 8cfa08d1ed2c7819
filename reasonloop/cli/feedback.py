"""Feedback commands: record feedback on an answer, and build a DPO preference dataset from it."""

from __future__ import annotations

from typing import Annotated

import typer

from reasonloop.cli import common
from reasonloop.cli.common import fail, guarded, print_table, settings_of

app = typer.Typer()
feedback_app = typer.Typer(help="Feedback on answers: the input of DPO dataset builds.", no_args_is_help=True)
app.add_typer(feedback_app, name="feedback")


@feedback_app.command("add")
def feedback_add(ctx: typer.Context,
                 question_id: Annotated[str, typer.Option(help="the question's id")],
                 question: Annotated[str, typer.Option(help="the question as asked")],
                 answer: Annotated[str, typer.Option(help="the answer that was given")],
                 rating: Annotated[str, typer.Option(help="up | down | 1-5")],
                 correct: Annotated[str | None, typer.Option(help="the corrected answer")] = None,
                 comment: Annotated[str | None, typer.Option(help="free text")] = None,
                 segment: Annotated[str | None, typer.Option(help="user segment")] = None,
                 run: Annotated[str | None, typer.Option(help="the MLflow run that produced the answer")] = None,
                 ) -> None:
    """Record one piece of feedback in the feedback folder (validated; appended atomically)."""
    from datetime import UTC, datetime

    from pydantic import ValidationError

    from reasonloop.feedback.records import FeedbackRecord, append_feedback
    from reasonloop.monitoring.runs import run_ids
    from reasonloop.providers import build_tracker

    settings = settings_of(ctx)
    if run and settings.preferences.known_runs_only and run not in run_ids(build_tracker(settings)):
        fail(f"--run {run}: no nightly-eval or canary run has this id (`reasonloop runs` lists them)", 2)
    try:
        record = FeedbackRecord(question_id=question_id, question=question, answer=answer,
                                rating=rating, corrected_answer=correct,
                                comment=comment, segment=segment, timestamp=datetime.now(UTC), source_run_id=run)
    except ValidationError as exc:
        problems = "; ".join(f"--{'.'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in exc.errors())
        fail(problems, 2)
    assert settings.preferences.feedback_dir is not None
    path = append_feedback(settings.preferences.feedback_dir, record)
    common.console.print(f"feedback recorded in {path}")


@app.command("build-dpo")
def build_dpo(ctx: typer.Context) -> None:
    """Build a DPO preference dataset from the feedback folder (TRL format, under <out_dir>/<sha256[:12]>), logged
    to MLflow (<prefix>-dpo-build) with its lineage."""
    from flows.build_dpo import build_dpo as build_flow

    report = guarded(lambda: build_flow(settings_of(ctx)))
    print_table("DPO dataset", {**report.rows, "MLflow run": report.run_id})
