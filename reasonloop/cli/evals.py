"""Evaluation commands: the main job (`run`), the nightly eval, drift, recent runs, the baseline the gate compares
against, and the review queue."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from reasonloop.cli import common
from reasonloop.cli.common import EXIT_PARTIAL, cell, fail, guarded, print_table, settings_of
from reasonloop.cli.index import run_reindex
from reasonloop.errors import ReasonloopError
from reasonloop.settings import Settings

app = typer.Typer()
review_app = typer.Typer(help="Answers routed to human review by the nightly eval.", no_args_is_help=True)
app.add_typer(review_app, name="review")
baseline_app = typer.Typer(help="The baseline run the nightly eval's regression gate compares against.",
                           no_args_is_help=True)
app.add_typer(baseline_app, name="baseline")
RunOption = Annotated[str | None, typer.Option("--run", help="nightly-eval run id (default: the newest)")]


def run_eval(settings: Settings) -> None:
    from flows.nightly_eval import nightly_eval
    from reasonloop.providers import build_tracker

    report = guarded(lambda: nightly_eval(settings))
    tracker = build_tracker(settings)
    print_table(f"nightly eval ({settings.llm.provider}: {settings.llm.model}; judge {settings.judge.provider})",
                {**report.rows, "MLflow run": report.run_id})
    common.console.print("Open this run in the MLflow UI:", style="bold")
    common.console.print(f"  {tracker.ui_command()}", highlight=False, soft_wrap=True)
    common.console.print(f"  {tracker.run_url(report.experiment_id, report.run_id)}", highlight=False,
                         soft_wrap=True)
    if failed := int(report.metrics["n_failed"]):
        common.err_console.print(f"[yellow]partial:[/yellow] {failed} of {int(report.metrics['n_questions'])} "
                                 "questions have no answer after their retries; run it again to ask only those. "
                                 "Causes:", highlight=False, soft_wrap=True)
        for cause in report.rows.get("failure causes", "").splitlines():
            common.err_console.print(f"  {cause}", highlight=False, soft_wrap=True, markup=False)
        common.err_console.print(f"every one in {tracker.artifact_location(report.run_id, 'eval/failed.json')}",
                                 highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(EXIT_PARTIAL)


@app.command()
def run(ctx: typer.Context) -> None:
    """The main job: reindex the corpus, then run the nightly eval and print its summary."""
    settings = settings_of(ctx)
    run_reindex(settings)
    run_eval(settings)


def run_live_eval(settings: Settings, since: str | None) -> None:
    from flows.live_eval import nightly_eval_live
    from reasonloop.providers import build_tracker

    report = guarded(lambda: nightly_eval_live(settings, since))
    print_table(f"live eval ({settings.judge.provider} judge, no references)", {**report.rows, "MLflow run":
                                                                                report.run_id})
    common.console.print(f"  {build_tracker(settings).run_url(report.experiment_id, report.run_id)}",
                         highlight=False, soft_wrap=True)


Source = Annotated[str | None, typer.Option(help="file: the saved question set | traces: live traffic (default "
                                                 "questions.source)")]


@app.command("eval")
def eval_(ctx: typer.Context, source: Source = None,
          since: Annotated[str | None, typer.Option(help="traces: how far back, e.g. 24h, 90m, 7d (default "
                                                         "live.window)")] = None) -> None:
    """Run the nightly evaluation flow over the configured question set, or (--source traces) over the live traffic
    of the last --since, judged without references."""
    from reasonloop.text import parse_duration

    settings = settings_of(ctx)
    source = source or settings.questions.source
    if source not in ("file", "traces"):
        fail(f"--source {source}: choose file or traces", 2)
    if since is not None:
        if source != "traces":
            fail("--since applies to --source traces only", 2)
        try:
            parse_duration(since)
        except ValueError as exc:
            fail(f"--since: {exc}", 2)
    if source == "traces":
        run_live_eval(settings, since)
    else:
        run_eval(settings)


@app.command("drift")
def drift_(ctx: typer.Context, run: Annotated[str | None, typer.Option(
        "--run", help="a nightly-eval (or live-eval) run id (default: the newest)")] = None,
           source: Source = None) -> None:
    """Compare a nightly eval with its reference (the baseline, else the previous drift.window runs): queries,
    retrieval, answers, judge metrics, the index; logged to MLflow (<prefix>-drift), alerts on drift."""
    from flows.drift import drift as drift_flow
    from reasonloop.providers import build_tracker

    settings = settings_of(ctx)
    kind = "live-eval" if (source or settings.questions.source) == "traces" else "nightly-eval"
    report = guarded(lambda: drift_flow(settings, run, kind))
    print_table("drift", {**report.rows, "MLflow run": report.run_id})
    common.console.print(f"  {build_tracker(settings).run_url(report.experiment_id, report.run_id)}",
                         highlight=False, soft_wrap=True)


@app.command()
def runs(ctx: typer.Context, limit: Annotated[int, typer.Option(min=1, help="how many runs")] = 10) -> None:
    """Recent reindex and eval runs with their key metrics, read back from MLflow."""
    from reasonloop.monitoring.runs import recent_runs
    from reasonloop.providers import build_tracker

    frame = recent_runs(build_tracker(settings_of(ctx)), limit)
    if frame.empty:
        common.console.print("no runs yet: try `reasonloop run`")
        return
    if common.console.width < WIDE:
        for line in run_lines(frame):
            common.console.print(line, highlight=False, markup=False, soft_wrap=True)
        return
    table = Table(title="recent runs")
    for name in ("started", "flow", "status", "run id", "provider", "prompt", *RUN_METRICS.values()):
        table.add_column(name, no_wrap=name == "run id", min_width=32 if name == "run id" else None)
    for _, row in frame.iterrows():
        table.add_row(row["start_time"].strftime("%Y-%m-%d %H:%M:%S"), cell(row, "tags.reasonloop.flow"),
                      cell(row, "status"), row["run_id"], cell(row, "params.llm.provider"),
                      cell(row, "params.prompt.reasoning"), *(cell(row, k) for k in RUN_METRICS))
    common.console.print(table)


WIDE = 120  # the one-row-per-run table needs this many columns; narrower terminals get two lines per run
RUN_METRICS = {"metrics.accuracy": "accuracy", "metrics.grounding_rate": "grounding",
               "metrics.hallucination_rate": "halluc.", "metrics.latency_p95_s": "p95 s",
               "metrics.cost_usd": "cost $", "metrics.n_chunks": "chunks"}


NARROW = {"metrics.accuracy": "acc", "metrics.grounding_rate": "ground", "metrics.hallucination_rate": "halluc",
          "metrics.latency_p95_s": "p95", "metrics.n_chunks": "chunks"}


def run_lines(frame: Any) -> list[str]:
    """Two lines per run within 80 columns: when, what, its status unless finished, and its figures; then its full
    id (to paste into `baseline set` or the MLflow UI), the provider, the prompt and the cost."""
    def short(row: Any, key: str) -> str:
        value = row.get(key)
        if not isinstance(value, float) or value != value:
            return ""
        return f"{value:.0f}" if value.is_integer() and key == "metrics.n_chunks" else f"{value:.3f}"

    lines = []
    for _, row in frame.iterrows():
        status = cell(row, "status")
        figures = " ".join(f"{name} {value}" for key, name in NARROW.items() if (value := short(row, key)))
        lines.append(f"{row['start_time']:%m-%d %H:%M}  {cell(row, 'tags.reasonloop.flow'):<13} "
                     f"{'' if status == 'FINISHED' else status + ' '}{figures}".rstrip())
        cost = f"${value}" if (value := short(row, "metrics.cost_usd")) else ""
        lines.append(f"  {row['run_id']}  {cell(row, 'params.llm.provider')} "
                     f"{cell(row, 'params.prompt.reasoning')} {cost}".rstrip())
    return lines


@baseline_app.command("set")
def baseline_set(ctx: typer.Context,
                 run_id: Annotated[str, typer.Argument(help="a finished nightly-eval run")]) -> None:
    """Gate every later nightly eval against RUN_ID's per-question results."""
    from reasonloop.monitoring.runs import set_baseline
    from reasonloop.providers import build_tracker

    tracker = build_tracker(settings_of(ctx))
    guarded(lambda: set_baseline(tracker, run_id))
    common.console.print(f"baseline: run {run_id}; the next nightly evals are gated against it")


@baseline_app.command("show")
def baseline_show(ctx: typer.Context) -> None:
    """The current baseline run, if any."""
    from reasonloop.monitoring.runs import baseline_run_id
    from reasonloop.providers import build_tracker

    run_id = baseline_run_id(build_tracker(settings_of(ctx)))
    common.console.print(f"baseline: run {run_id}" if run_id else "no baseline set: `reasonloop baseline set RUN_ID`")


def _review_rows(ctx: typer.Context, run: str | None) -> tuple[str, list[dict[str, Any]]]:
    from reasonloop.monitoring.runs import review_queue_of
    from reasonloop.providers import build_tracker

    try:
        return review_queue_of(build_tracker(settings_of(ctx)), run)
    except ReasonloopError as exc:
        fail(exc)


@review_app.command("list")
def review_list(ctx: typer.Context, run: RunOption = None,
                limit: Annotated[int, typer.Option(min=1, help="rows to show")] = 20) -> None:
    """The review queue of a nightly-eval run: question, answer, confidence and why it needs a person."""
    run_id, rows = _review_rows(ctx, run)
    if not rows:
        common.console.print(f"nothing to review in run {run_id}")
        return
    table = Table(title=f"review queue of run {run_id}: {len(rows)} answers")
    for name in ("question id", "question", "answer", "confidence", "why"):
        table.add_column(name, overflow="fold")
    for row in rows[:limit]:
        table.add_row(row["question_id"], row["question"], row["answer"], f"{row['confidence']:.2f}",
                      "; ".join(row["reasons"]))
    common.console.print(table)


@review_app.command("export")
def review_export(ctx: typer.Context, out: Annotated[Path, typer.Argument(help="a .jsonl or .csv file to write")],
                  run: RunOption = None) -> None:
    """Write the review queue to a file for annotators (JSON lines, or CSV by the file's suffix)."""
    if out.suffix not in {".jsonl", ".csv"}:
        fail(f"{out}: use a .jsonl or .csv file name", 2)
    run_id, rows = _review_rows(ctx, run)
    import pandas as pd

    frame = pd.DataFrame(rows, columns=["question_id", "question", "answer", "reference", "confidence", "strategy",
                                        "citations", "reasons"])
    tmp = out.with_name(f".{out.name}.tmp")
    if out.suffix == ".csv":
        frame.assign(reasons=frame["reasons"].str.join(" | ")).to_csv(tmp, index=False)
    else:
        frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
    tmp.replace(out)  # atomic: a reader never sees half a file
    common.console.print(f"wrote {len(rows)} answers from run {run_id} to {out}")
