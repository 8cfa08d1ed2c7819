"""`reasonloop`: reindex, evaluate, inspect config and runs. Heavy imports happen inside commands so that
`reasonloop --help` stays fast."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from reasonloop.errors import ReasonloopError
from reasonloop.settings import Settings, apply_environment, load_settings

app = typer.Typer(help="reasonloop: index, reason, evaluate and track an LLM reasoning system.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
index_app = typer.Typer(help="Index versions: what is served, and rollback.", no_args_is_help=True)
app.add_typer(index_app, name="index")
review_app = typer.Typer(help="Answers routed to human review by the nightly eval.", no_args_is_help=True)
app.add_typer(review_app, name="review")
baseline_app = typer.Typer(help="The baseline run the nightly eval's regression gate compares against.",
                           no_args_is_help=True)
app.add_typer(baseline_app, name="baseline")
judge_app = typer.Typer(help="The judge: its agreement with human labels.", no_args_is_help=True)
app.add_typer(judge_app, name="judge")
prompt_app = typer.Typer(help="Prompt templates in MLflow's prompt registry: register versions, move aliases.",
                         no_args_is_help=True)
app.add_typer(prompt_app, name="prompt")
feedback_app = typer.Typer(help="Feedback on answers: the input of DPO dataset builds.", no_args_is_help=True)
app.add_typer(feedback_app, name="feedback")
console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")
EXIT_PARTIAL = 3  # the run finished, but some questions have no answer (they are retried by the next run)


def _fail(message: object, code: int = 1) -> NoReturn:
    """One clear line on stderr, then exit non-zero (no traceback)."""
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.callback()
def main(ctx: typer.Context,
         profile: Annotated[str | None, typer.Option(help="configs/profiles/<NAME>.yaml merged over default.yaml",
                                                     envvar="REASONLOOP_PROFILE")] = None,
         verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show Prefect's log lines")] = False) -> None:
    ctx.obj = {"profile": profile, "verbose": verbose}


def _settings(ctx: typer.Context) -> Settings:
    try:
        settings = load_settings(ctx.obj["profile"])
    except ReasonloopError as exc:
        _fail(exc, 2)
    apply_environment(settings)
    if not ctx.obj["verbose"]:
        # The terminal gets progress bars, the summary and one-line errors; -v shows library logs too.
        # Prefect still sends every log line to its API (visible in the Prefect UI).
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
    return settings


@contextmanager
def _progress() -> Iterator[None]:
    from reasonloop import progress

    bars: dict[str, Any] = {}
    lock = threading.Lock()  # batch tasks report from several threads
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True) as view:
        def listener(stage: str, step: int, total: int | None) -> None:
            with lock:
                if stage not in bars:
                    bars[stage] = view.add_task(stage, total=total)
                view.update(bars[stage], advance=step, total=total if total is not None else
                            view.tasks[bars[stage]].total)

        with progress.listening(listener):
            yield


def _guarded(work: Callable[[], T]) -> T:
    """Run flow work; our errors print as one clear message and exit 1 (no traceback)."""
    try:
        with _progress():
            return work()
    except ReasonloopError as exc:
        _fail(exc)


def _print_table(title: str, rows: dict[str, str]) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows.items():
        table.add_row(key, value)
    console.print(table)


def _run_reindex(settings: Settings, full: bool = False) -> None:
    from flows.reindex import reindex as reindex_flow

    report = _guarded(lambda: reindex_flow(settings, full))
    _print_table("reindex", {**report.rows, "duration": f"{report.metrics['duration_s']:.1f} s",
                             "MLflow run": report.run_id})


def _run_eval(settings: Settings) -> None:
    from flows.nightly_eval import nightly_eval
    from reasonloop.monitoring.tracking import run_url, ui_command

    report = _guarded(lambda: nightly_eval(settings))
    _print_table(f"nightly eval ({settings.llm.provider}: {settings.llm.model}; judge {settings.judge.provider})",
                 {**report.rows, "MLflow run": report.run_id})
    console.print("Open this run in the MLflow UI:", style="bold")
    console.print(f"  {ui_command(settings)}", highlight=False, soft_wrap=True)
    console.print(f"  {run_url(settings, report.experiment_id, report.run_id)}", highlight=False, soft_wrap=True)
    if failed := int(report.metrics["n_failed"]):
        err_console.print(f"[yellow]partial:[/yellow] {failed} of {int(report.metrics['n_questions'])} questions "
                          "have no answer after their retries (eval/failed.json in the run); run it again to ask "
                          "only those", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_PARTIAL)


@app.command()
def reindex(ctx: typer.Context,
            full: Annotated[bool, typer.Option("--full", help="rebuild every chunk instead of only changes")] = False,
            ) -> None:
    """Build a new index version from the corpus (only changed documents are embedded) and serve it."""
    _run_reindex(_settings(ctx), full)


@app.command("eval")
def eval_(ctx: typer.Context) -> None:
    """Run the nightly evaluation flow over the configured question set."""
    _run_eval(_settings(ctx))


@app.command()
def canary(ctx: typer.Context,
           candidate: Annotated[str, typer.Option(help="a model name, or a prompt version: chain_of_thought@v2")],
           slice_size: Annotated[int | None, typer.Option("--slice", min=2, help="questions (default canary.slice)")]
           = None) -> None:
    """Evaluate CANDIDATE beside production on a slice of the questions; promote it when the gate passes (exit 0),
    else leave production as it was (exit 1)."""
    from flows.canary import canary as canary_flow

    settings = _settings(ctx)
    report = _guarded(lambda: canary_flow(candidate, settings, slice_size))
    _print_table("canary", {**report.rows, "MLflow run": report.run_id})
    if not report.metrics["promoted"]:
        raise typer.Exit(1)


@app.command("drift")
def drift_(ctx: typer.Context, run: Annotated[str | None, typer.Option(
        "--run", help="a nightly-eval run id (default: the newest)")] = None) -> None:
    """Compare a nightly eval with its reference (the baseline, else the previous drift.window runs): queries,
    retrieval, answers, judge metrics, the index; logged to MLflow (<prefix>-drift), alerts on drift."""
    from flows.drift import drift as drift_flow
    from reasonloop.monitoring.tracking import run_url

    settings = _settings(ctx)
    report = _guarded(lambda: drift_flow(settings, run))
    _print_table("drift", {**report.rows, "MLflow run": report.run_id})
    console.print(f"  {run_url(settings, report.experiment_id, report.run_id)}", highlight=False, soft_wrap=True)


@app.command("build-dpo")
def build_dpo(ctx: typer.Context) -> None:
    """Build a DPO preference dataset from the feedback folder (TRL format, under <out_dir>/<sha256[:12]>), logged
    to MLflow (<prefix>-dpo-build) with its lineage."""
    from flows.build_dpo import build_dpo as build_flow

    report = _guarded(lambda: build_flow(_settings(ctx)))
    _print_table("DPO dataset", {**report.rows, "MLflow run": report.run_id})


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
    from reasonloop.monitoring.tracking import run_ids

    settings = _settings(ctx)
    if run and settings.preferences.known_runs_only and run not in run_ids(settings):
        _fail(f"--run {run}: no nightly-eval or canary run has this id (`reasonloop runs` lists them)", 2)
    try:
        record = FeedbackRecord(question_id=question_id, question=question, answer=answer,
                                rating=rating, corrected_answer=correct,
                                comment=comment, segment=segment, timestamp=datetime.now(UTC), source_run_id=run)
    except ValidationError as exc:
        problems = "; ".join(f"--{'.'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in exc.errors())
        _fail(problems, 2)
    assert settings.preferences.feedback_dir is not None
    path = append_feedback(settings.preferences.feedback_dir, record)
    console.print(f"feedback recorded in {path}")


@app.command()
def run(ctx: typer.Context) -> None:
    """The main job: reindex the corpus, then run the nightly eval and print its summary."""
    settings = _settings(ctx)
    _run_reindex(settings)
    _run_eval(settings)


@config_app.command("show")
def config_show(ctx: typer.Context,
                as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of YAML")] = False) -> None:
    """Print the effective configuration (defaults < profile < env); API keys are shown masked."""
    settings = _settings(ctx)
    data = settings.public_dict()
    for section in ("llm", "judge"):
        cfg = getattr(settings, section)
        data[section]["api_key"] = f"(set in {cfg.api_key_env})" if cfg.api_key() else f"(not set: {cfg.api_key_env})"
    if as_json:
        console.print_json(json.dumps(data))
    else:
        import yaml

        console.print(yaml.safe_dump(data, sort_keys=False), highlight=False, end="")


def _cell(row: Any, key: str) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and value != value):  # missing or NaN
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


@app.command()
def runs(ctx: typer.Context, limit: Annotated[int, typer.Option(min=1, help="how many runs")] = 10) -> None:
    """Recent reindex and eval runs with their key metrics, read back from MLflow."""
    settings = _settings(ctx)
    from reasonloop.monitoring.tracking import recent_runs

    frame = recent_runs(settings, limit)
    if frame.empty:
        console.print("no runs yet: try `reasonloop run`")
        return
    columns = {"metrics.accuracy": "accuracy", "metrics.grounding_rate": "grounding",
               "metrics.hallucination_rate": "halluc.", "metrics.latency_p95_s": "p95 s",
               "metrics.cost_usd": "cost $", "metrics.n_chunks": "chunks"}
    table = Table(title="recent runs")
    for name in ("started", "flow", "status", "run id", "provider", "prompt", *columns.values()):
        table.add_column(name, no_wrap=name == "run id", min_width=32 if name == "run id" else None)
    for _, row in frame.iterrows():
        table.add_row(row["start_time"].strftime("%Y-%m-%d %H:%M:%S"), _cell(row, "tags.reasonloop.flow"),
                      _cell(row, "status"), row["run_id"], _cell(row, "params.llm.provider"),
                      _cell(row, "params.prompt.reasoning"), *(_cell(row, k) for k in columns))
    console.print(table)


def _index_store(settings: Settings) -> Any:
    from reasonloop.retrieval.index_versions import IndexStore

    return IndexStore(settings.state_dir, settings.chroma.collection)


@index_app.command("status")
def index_status(ctx: typer.Context) -> None:
    """The serving index version and the versions kept for rollback."""
    store = _index_store(_settings(ctx))
    pointer = store.pointer()
    if pointer is None:
        console.print("no index yet: run `reasonloop reindex`")
        return
    table = Table(title=f"index '{store.base}'")
    for name in ("version", "serving", "created", "documents", "chunks", "content hash"):
        table.add_column(name)
    for version in reversed(pointer.kept):
        m = store.manifest(version)
        table.add_row(str(version), "yes" if version == pointer.current else "", m.created_at,
                      str(len(m.documents)), str(m.n_chunks), m.content_hash[:16])
    console.print(table)


@index_app.command("rollback")
def index_rollback(ctx: typer.Context,
                   to: Annotated[int | None, typer.Option(help="version to serve (default: the previous one)")] = None,
                   ) -> None:
    """Serve an older kept version again (the pointer moves atomically; nothing is rebuilt)."""
    store = _index_store(_settings(ctx))
    if store.pointer() is None:  # before the lock: a state folder without an index gets no lock file either
        _fail(f"there is no index '{store.base}' to roll back: run `reasonloop reindex` first")
    try:
        with store.lock(0.0):
            pointer = store.rollback(to)
    except ReasonloopError as exc:
        _fail(exc)
    console.print(f"serving index version {pointer.current} (kept: {pointer.kept})")


RunOption = Annotated[str | None, typer.Option("--run", help="nightly-eval run id (default: the newest)")]


def _review_rows(ctx: typer.Context, run: str | None) -> tuple[str, list[dict[str, Any]]]:
    from reasonloop.monitoring.tracking import review_queue_of

    try:
        return review_queue_of(_settings(ctx), run)
    except ReasonloopError as exc:
        _fail(exc)


@review_app.command("list")
def review_list(ctx: typer.Context, run: RunOption = None,
                limit: Annotated[int, typer.Option(min=1, help="rows to show")] = 20) -> None:
    """The review queue of a nightly-eval run: question, answer, confidence and why it needs a person."""
    run_id, rows = _review_rows(ctx, run)
    if not rows:
        console.print(f"nothing to review in run {run_id}")
        return
    table = Table(title=f"review queue of run {run_id}: {len(rows)} answers")
    for name in ("question id", "question", "answer", "confidence", "why"):
        table.add_column(name, overflow="fold")
    for row in rows[:limit]:
        table.add_row(row["question_id"], row["question"], row["answer"], f"{row['confidence']:.2f}",
                      "; ".join(row["reasons"]))
    console.print(table)


@review_app.command("export")
def review_export(ctx: typer.Context, out: Annotated[Path, typer.Argument(help="a .jsonl or .csv file to write")],
                  run: RunOption = None) -> None:
    """Write the review queue to a file for annotators (JSON lines, or CSV by the file's suffix)."""
    if out.suffix not in {".jsonl", ".csv"}:
        _fail(f"{out}: use a .jsonl or .csv file name", 2)
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
    console.print(f"wrote {len(rows)} answers from run {run_id} to {out}")


@judge_app.command("calibrate")
def judge_calibrate(ctx: typer.Context,
                    data: Annotated[list[Path] | None, typer.Option(
                        "--data", help="labeled pairs (.jsonl, or SummEdits .json); repeatable; default: "
                                       "judge.calibration_data")] = None) -> None:
    """Score the configured judge against human consistency labels: balanced accuracy, Cohen's kappa and AUROC
    per domain, logged to MLflow (<prefix>-judge-calibration)."""
    from flows.calibrate_judge import judge_calibration

    settings = _settings(ctx)
    if data:
        settings = settings.model_copy(update={"judge": settings.judge.model_copy(
            update={"calibration_data": [p.resolve() for p in data]})})
    report = _guarded(lambda: judge_calibration(settings))
    _print_table("judge calibration (consistent = no unsupported claim)", {**report.rows, "MLflow run": report.run_id})


@judge_app.command("promote")
def judge_promote(ctx: typer.Context,
                  candidate: Annotated[str, typer.Option(help="a judge model, or a rubric version: judge_answer@v3")],
                  ) -> None:
    """Calibrate a candidate judge against the human labels and promote it (pointer / prompt alias) only when it
    reaches judge.calibration_floor (exit 0); else the production judge stays (exit 1)."""
    from flows.calibrate_judge import promote_judge

    report = _guarded(lambda: promote_judge(candidate, _settings(ctx)))
    _print_table("judge promotion", {**report.rows, "MLflow run": report.run_id})
    if not report.metrics["promoted"]:
        raise typer.Exit(1)


@judge_app.command("history")
def judge_history(ctx: typer.Context, limit: Annotated[int, typer.Option(min=1, help="how many runs")] = 20) -> None:
    """Calibration runs, newest first: each judge model and rubric version's agreement with the human labels over
    time, and whether it was over its floor."""
    from reasonloop.monitoring.tracking import recent_runs

    frame = recent_runs(_settings(ctx), limit, kinds=("judge-calibration",), finished_only=True)
    table = Table("started", "judge", "model", "balanced acc.", "kappa", "AUROC", "floor", title="judge calibrations",
                  title_justify="left")
    for _, row in frame.iterrows():
        table.add_row(str(row["start_time"])[:19], _cell(row, "tags.judge.version"), _cell(row, "tags.judge.model"),
                      _cell(row, "metrics.all.balanced_accuracy"), _cell(row, "metrics.all.cohen_kappa"),
                      _cell(row, "metrics.all.auroc"), _cell(row, "tags.reasonloop.judge_floor"))
    console.print(table if len(frame) else "no calibration runs yet: `reasonloop judge calibrate`")


@baseline_app.command("set")
def baseline_set(ctx: typer.Context,
                 run_id: Annotated[str, typer.Argument(help="a finished nightly-eval run")]) -> None:
    """Gate every later nightly eval against RUN_ID's per-question results."""
    from reasonloop.monitoring.tracking import set_baseline

    settings = _settings(ctx)
    _guarded(lambda: set_baseline(settings, run_id))
    console.print(f"baseline: run {run_id}; the next nightly evals are gated against it")


@baseline_app.command("show")
def baseline_show(ctx: typer.Context) -> None:
    """The current baseline run, if any."""
    from reasonloop.monitoring.tracking import baseline_run_id

    run_id = baseline_run_id(_settings(ctx))
    console.print(f"baseline: run {run_id}" if run_id else "no baseline set: `reasonloop baseline set RUN_ID`")


def _registry(ctx: typer.Context) -> Settings:
    import mlflow

    settings = _settings(ctx)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    return settings


@prompt_app.command("register")
def prompt_register(ctx: typer.Context) -> None:
    """Register every template in the prompts folder (a text already registered is not duplicated)."""
    from reasonloop.reasoning.prompt_registry import register_prompt
    from reasonloop.reasoning.prompts import load_prompt

    settings = _registry(ctx)
    paths = sorted(settings.prompts.dir.glob("*.yaml"))
    prompts = _guarded(lambda: [load_prompt(settings.prompts.dir, path.stem) for path in paths])  # all, or none
    for prompt in prompts:
        version = register_prompt(prompt)
        console.print(f"{prompt.ref} ({prompt.sha256[:12]}) -> prompts:/{version.name}/{version.version}")


@prompt_app.command("alias")
def prompt_alias(ctx: typer.Context, name: Annotated[str, typer.Argument(help="prompt name, e.g. chain_of_thought")],
                 alias: Annotated[str, typer.Argument(help="alias, e.g. production")],
                 version: Annotated[int, typer.Argument(min=1, help="the template's own version (vN in the file)")]
                 ) -> None:
    """Point NAME@ALIAS at file version VERSION; configs naming `NAME@ALIAS` use it from their next run."""
    from reasonloop.reasoning.prompt_registry import set_prompt_alias

    _registry(ctx)
    registry_version = _guarded(lambda: set_prompt_alias(name, alias, version))
    console.print(f"{name}@{alias} -> {name}@v{version} (prompts:/{name}/{registry_version})")


def _serving_environment(ctx: typer.Context, settings: Settings) -> None:
    """What a deployed run's own process needs to load the same settings: the profile and the project root."""
    from reasonloop.paths import project_root

    if ctx.obj["profile"]:
        os.environ["REASONLOOP_PROFILE"] = ctx.obj["profile"]
    os.environ["REASONLOOP_ROOT"] = str(project_root())
    os.environ["REASONLOOP_STATE_DIR"] = str(settings.state_dir)


@contextmanager
def _prefect_api(settings: Settings) -> Iterator[str]:
    """The configured Prefect API, else a local server under the state folder for as long as the block runs."""
    from reasonloop.ops.prefect_server import local_server

    configured = settings.prefect.api_url or os.environ.get("PREFECT_API_URL")
    if configured:
        yield configured
        return
    err_console.print(f"starting a local Prefect server on 127.0.0.1:{settings.deployments.server_port} "
                      f"(its database: {settings.prefect_home}) ...")
    with local_server(settings, settings.deployments.server_port) as api_url:
        yield api_url


def _interruptible() -> None:
    """Let Ctrl-C, and the SIGTERM of `docker stop` or systemd, stop a long-running command through its cleanup,
    even when it was started with SIGINT ignored (a background job, some CI runners)."""
    def interrupt(signum: int, frame: object) -> NoReturn:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


@app.command()
def serve(ctx: typer.Context) -> None:
    """Serve every flow as a Prefect deployment from this process: the crons in `deployments:`, on-demand runs
    (`reasonloop trigger`), and a reindex whenever the corpus folder changes. Starts a local Prefect server under
    the state folder unless prefect.api_url / PREFECT_API_URL names one. Ctrl-C stops it."""
    settings = _settings(ctx)
    _interruptible()
    _serving_environment(ctx, settings)
    os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "INFO" if ctx.obj["verbose"] else "WARNING"
    try:
        with _prefect_api(settings) as api_url:
            os.environ["PREFECT_API_URL"] = api_url  # before Prefect is imported: it reads this once
            from reasonloop.monitoring.tracking import git_commit
            from reasonloop.ops.deployments import deployment_specs, serve_deployments
            from reasonloop.paths import project_root

            table = Table("deployment", "schedule", "trigger", title=f"serving on {api_url}", title_justify="left")
            for spec in deployment_specs(settings):
                table.add_row(spec.full_name, f"{spec.cron} ({spec.timezone})" if spec.cron else "on demand",
                              f"reasonloop trigger {spec.command}")
            console.print(table)
            watch = settings.deployments.watch_corpus
            if watch.enabled:
                console.print(f"watching {settings.corpus.path} every {watch.interval_s:g} s: a change starts a "
                              "reindex run")
            console.print(f"Prefect UI: {api_url.removesuffix('/api')}   (Ctrl-C stops serving)")
            serve_deployments(settings, version=git_commit(project_root())[:12])
    except ReasonloopError as exc:
        _fail(exc)


@app.command()
def trigger(ctx: typer.Context,
            flow: Annotated[str, typer.Argument(help="reindex | eval | drift | build-dpo")],
            wait: Annotated[bool, typer.Option("--wait/--no-wait", help="follow the run to its end")] = True) -> None:
    """Start a run of a served deployment and follow it (exit 0 when it completes, 1 otherwise)."""
    from reasonloop.ops.deployments import spec_for
    from reasonloop.ops.prefect_server import configured_api_url

    settings = _settings(ctx)
    try:
        spec = spec_for(settings, flow)
    except ReasonloopError as exc:
        _fail(exc, 2)
    api_url = configured_api_url(settings)
    if api_url is None:
        _fail("no Prefect server to start the run on: start `reasonloop serve` (or set prefect.api_url / "
              "PREFECT_API_URL)")
    os.environ["PREFECT_API_URL"] = api_url
    from reasonloop.monitoring.tracking import run_url, runs_of_flow_run
    from reasonloop.ops.deployments import follow_run, start_run

    try:
        run = start_run(spec, tags=["manual"])
    except ReasonloopError as exc:
        _fail(exc)
    console.print(f"started {spec.full_name}: flow run '{run.name}'  "
                  f"{api_url.removesuffix('/api')}/runs/flow-run/{run.id}", highlight=False, soft_wrap=True)
    if not wait:
        return
    with err_console.status(f"{spec.full_name}: scheduled") as status:
        final = follow_run(run.id, lambda p: status.update(
            f"{spec.full_name}: {p.state.lower()} ({p.tasks_done}/{p.tasks_seen} task runs finished)"))
    rows = {"flow run": f"{run.name} ({run.id})", "state": final.name + (f": {final.message}" if final.message
                                                                         else "")}
    for kind, experiment_id, run_id in runs_of_flow_run(settings, str(run.id)):
        rows[f"MLflow {kind} run"] = run_url(settings, experiment_id, run_id)
    _print_table(f"trigger {flow}", rows)
    if final.state != "COMPLETED":
        raise typer.Exit(1)
    if final.name == "Partial":
        raise typer.Exit(EXIT_PARTIAL)


@app.command("prefect-ui")
def prefect_ui(ctx: typer.Context) -> None:
    """The Prefect server and its UI on 127.0.0.1 (deployments.server_port), its database in the state folder;
    `reasonloop serve` started elsewhere uses it. Ctrl-C stops it."""
    import time

    from reasonloop.ops.prefect_server import configured_api_url

    settings = _settings(ctx)
    _interruptible()
    if running := configured_api_url(settings):
        console.print(f"a Prefect server already answers: open {running.removesuffix('/api')}")
        return
    try:
        with _prefect_api(settings) as api_url:
            console.print(f"Prefect UI on {api_url.removesuffix('/api')} (Ctrl-C stops it)")
            while True:
                time.sleep(3600)
    except ReasonloopError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        pass


def _nightly_vitals(settings: Settings, last: int) -> Any:
    from reasonloop.monitoring.tracking import recent_runs

    return recent_runs(settings, last, kinds=("nightly-eval",), finished_only=True)


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


@app.command()
def report(ctx: typer.Context,
           last: Annotated[int, typer.Option(min=1, help="how many nightly evals")] = 30,
           out: Annotated[Path | None, typer.Option(help="the HTML file (default <state_dir>/reports/vitals.html)")]
           = None,
           prometheus: Annotated[Path | None, typer.Option(
               help="also write the newest run's vitals in Prometheus' text format (e.g. for node_exporter's "
                    "textfile collector: a .prom file)")] = None) -> None:
    """An HTML dashboard of the last nightly evals: accuracy, grounding, hallucination, latency, context length, cost
    per query and drift, as a table and a trend plot each."""
    from reasonloop.monitoring.tracking import experiment_name, run_url
    from reasonloop.monitoring.vitals import prometheus_text, render_dashboard

    settings = _settings(ctx)
    frame = _nightly_vitals(settings, last)
    out = out or settings.state_dir / "reports" / "vitals.html"
    _write_atomically(out, render_dashboard(frame, lambda e, r: run_url(settings, e, r),
                                            f"reasonloop vitals: last {len(frame)} nightly evals"))
    console.print(f"wrote {out} ({len(frame)} nightly eval runs)")
    if prometheus:
        _write_atomically(prometheus, prometheus_text(frame, experiment_name(settings, "nightly-eval")))
        console.print(f"wrote {prometheus}")


@app.command()
def metrics(ctx: typer.Context, port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 9464,
            host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1") -> None:
    """A Prometheus scrape endpoint (/metrics): the newest nightly eval's vitals, read from MLflow at every scrape.
    Ctrl-C stops it."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from reasonloop.monitoring.tracking import experiment_name
    from reasonloop.monitoring.vitals import prometheus_text

    settings = _settings(ctx)
    experiment = experiment_name(settings, "nightly-eval")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404, "only /metrics is here")
                return
            body = prometheus_text(_nightly_vitals(settings, 1), experiment).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:  # scrapes are not news
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    _interruptible()
    console.print(f"Prometheus metrics on http://{host}:{port}/metrics (Ctrl-C stops it)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@app.command()
def ui(ctx: typer.Context, port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 5000) -> None:
    """Start the MLflow UI on 127.0.0.1 against the configured tracking store."""
    settings = _settings(ctx)
    if not settings.mlflow_tracking_uri.startswith("sqlite:"):
        console.print(f"the tracking store is a server: open {settings.mlflow_tracking_uri}")
        return
    console.print(f"MLflow UI on http://127.0.0.1:{port} (Ctrl-C stops it)")
    raise typer.Exit(subprocess.call([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri",
                                      settings.mlflow_tracking_uri, "--host", "127.0.0.1", "--port", str(port)]))


if __name__ == "__main__":
    app()
