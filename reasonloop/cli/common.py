"""What every command shares: the consoles (the CLI owns the terminal), loading the settings once, progress bars,
one-line errors with an exit code, tables, and stopping long-running commands cleanly."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from reasonloop.errors import ReasonloopError
from reasonloop.settings import Settings, apply_environment, load_settings

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")
EXIT_PARTIAL = 3  # the run finished, but some questions have no answer (they are retried by the next run)


def fail(message: object, code: int = 1) -> NoReturn:
    """One clear line on stderr, then exit non-zero (no traceback)."""
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def settings_of(ctx: typer.Context) -> Settings:
    try:
        settings = load_settings(ctx.obj["profile"])
    except ReasonloopError as exc:
        fail(exc, 2)
    apply_environment(settings)
    if not ctx.obj["verbose"]:
        # The terminal gets progress bars, the summary and one-line errors; -v shows library logs too.
        # Prefect still sends every log line to its API (visible in the Prefect UI).
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
    return settings


@contextmanager
def progress_bars() -> Iterator[None]:
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


def guarded(work: Callable[[], T]) -> T:
    """Run flow work; our errors print as one clear message and exit 1 (no traceback)."""
    try:
        with progress_bars():
            return work()
    except ReasonloopError as exc:
        fail(exc)


def print_table(title: str, rows: dict[str, str]) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows.items():
        table.add_row(key, value)
    console.print(table)


def cell(row: Any, key: str) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and value != value):  # missing or NaN
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def interruptible() -> None:
    """Let Ctrl-C, and the SIGTERM of `docker stop` or systemd, stop a long-running command through its cleanup,
    even when it was started with SIGINT ignored (a background job, some CI runners)."""
    def interrupt(signum: int, frame: object) -> NoReturn:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
