"""Judge commands: the judge's agreement with human labels, promoting a candidate judge, and their history."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from reasonloop.cli import common
from reasonloop.cli.common import cell, guarded, print_table, settings_of

app = typer.Typer()
judge_app = typer.Typer(help="The judge: its agreement with human labels.", no_args_is_help=True)
app.add_typer(judge_app, name="judge")


@judge_app.command("calibrate")
def judge_calibrate(ctx: typer.Context,
                    data: Annotated[list[Path] | None, typer.Option(
                        "--data", help="labeled pairs (.jsonl, or SummEdits .json); repeatable; default: "
                                       "judge.calibration_data")] = None) -> None:
    """Score the configured judge against human consistency labels: balanced accuracy, Cohen's kappa and AUROC
    per domain, logged to MLflow (<prefix>-judge-calibration)."""
    from flows.calibrate_judge import judge_calibration

    settings = settings_of(ctx)
    if data:
        settings = settings.updated({"judge": {"calibration_data": [p.resolve() for p in data]}})
    report = guarded(lambda: judge_calibration(settings))
    print_table("judge calibration (consistent = no unsupported claim)", {**report.rows, "MLflow run": report.run_id})


@judge_app.command("promote")
def judge_promote(ctx: typer.Context,
                  candidate: Annotated[str, typer.Option(help="a judge model, or a rubric version: judge_answer@v3")],
                  ) -> None:
    """Calibrate a candidate judge against the human labels and promote it (pointer / prompt alias) only when it
    reaches judge.calibration_floor (exit 0); else the production judge stays (exit 1)."""
    from flows.calibrate_judge import promote_judge

    report = guarded(lambda: promote_judge(candidate, settings_of(ctx)))
    print_table("judge promotion", {**report.rows, "MLflow run": report.run_id})
    if not report.metrics["promoted"]:
        raise typer.Exit(1)


@judge_app.command("history")
def judge_history(ctx: typer.Context, limit: Annotated[int, typer.Option(min=1, help="how many runs")] = 20) -> None:
    """Calibration runs, newest first: each judge model and rubric version's agreement with the human labels over
    time, and whether it was over its floor."""
    from reasonloop.monitoring.runs import recent_runs
    from reasonloop.providers import build_tracker

    frame = recent_runs(build_tracker(settings_of(ctx)), limit, kinds=("judge-calibration",), finished_only=True)
    table = Table("started", "judge", "model", "balanced acc.", "kappa", "AUROC", "floor", title="judge calibrations",
                  title_justify="left")
    for _, row in frame.iterrows():
        table.add_row(str(row["start_time"])[:19], cell(row, "tags.judge.version"), cell(row, "tags.judge.model"),
                      cell(row, "metrics.all.balanced_accuracy"), cell(row, "metrics.all.cohen_kappa"),
                      cell(row, "metrics.all.auroc"), cell(row, "tags.reasonloop.judge_floor"))
    common.console.print(table if len(frame) else "no calibration runs yet: `reasonloop judge calibrate`")
