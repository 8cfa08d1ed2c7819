"""`reasonloop`: the command line. One module per verb group (index, eval, judge, canary, feedback, ops); heavy
imports happen inside commands so that `reasonloop --help` stays fast. The CLI owns the terminal: commands print
tables and one-line errors (exit 2 for bad configuration or arguments, 3 for a partial nightly eval, 1 otherwise)."""

from __future__ import annotations

from typing import Annotated

import typer

from reasonloop.cli import canary, evals, feedback, index, judge, ops

app = typer.Typer(help="reasonloop: index, reason, evaluate and track an LLM reasoning system.",
                  no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def main(ctx: typer.Context,
         profile: Annotated[str | None, typer.Option(help="configs/profiles/<NAME>.yaml merged over default.yaml",
                                                     envvar="REASONLOOP_PROFILE")] = None,
         verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show Prefect's log lines")] = False) -> None:
    ctx.obj = {"profile": profile, "verbose": verbose}


for group in (evals, index, canary, judge, feedback, ops):
    app.add_typer(group.app)
