"""Index commands: build a new index version, see what is served, roll back."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from reasonloop.cli import common
from reasonloop.cli.common import fail, guarded, print_table, settings_of
from reasonloop.errors import ReasonloopError
from reasonloop.settings import Settings

app = typer.Typer()
index_app = typer.Typer(help="Index versions: what is served, and rollback.", no_args_is_help=True)
app.add_typer(index_app, name="index")


def run_reindex(settings: Settings, full: bool = False) -> None:
    from flows.reindex import reindex as reindex_flow

    report = guarded(lambda: reindex_flow(settings, full))
    print_table("reindex", {**report.rows, "duration": f"{report.metrics['duration_s']:.1f} s",
                            "MLflow run": report.run_id})


@app.command()
def reindex(ctx: typer.Context,
            full: Annotated[bool, typer.Option("--full", help="rebuild every chunk instead of only changes")] = False,
            ) -> None:
    """Build a new index version from the corpus (only changed documents are embedded) and serve it."""
    run_reindex(settings_of(ctx), full)


@index_app.command("status")
def index_status(ctx: typer.Context) -> None:
    """The serving index version and the versions kept for rollback."""
    from reasonloop.providers import index_store_of

    store = index_store_of(settings_of(ctx))
    pointer = store.pointer()
    if pointer is None:
        common.console.print("no index yet: run `reasonloop reindex`")
        return
    table = Table(title=f"index '{store.base}'")
    for name in ("version", "serving", "created", "documents", "chunks", "content hash"):
        table.add_column(name)
    for version in reversed(pointer.kept):
        m = store.manifest(version)
        table.add_row(str(version), "yes" if version == pointer.current else "", m.created_at,
                      str(m.n_documents), str(m.n_chunks), m.content_hash[:16])
    common.console.print(table)


@index_app.command("rollback")
def index_rollback(ctx: typer.Context,
                   to: Annotated[int | None, typer.Option(help="version to serve (default: the previous one)")] = None,
                   ) -> None:
    """Serve an older kept version again (the pointer moves atomically; nothing is rebuilt)."""
    from reasonloop.providers import index_store_of

    store = index_store_of(settings_of(ctx))
    if store.pointer() is None:  # before the lock: a state folder without an index gets no lock file either
        fail(f"there is no index '{store.base}' to roll back: run `reasonloop reindex` first")
    try:
        with store.lock(0.0):
            pointer = store.rollback(to)
    except ReasonloopError as exc:
        fail(exc)
    common.console.print(f"serving index version {pointer.current} (kept: {pointer.kept})")
