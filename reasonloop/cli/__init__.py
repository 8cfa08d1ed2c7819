"""The command line, the front door: one module per verb group (`index`, `evals`, `judge`, `canary`, `feedback`,
`api`, `ops`), the shared terminal helpers in `common.py`. The only part of the core that runs flows (imported inside
the commands, so `reasonloop --help` stays fast); everything else in the core is below it."""

from __future__ import annotations

from typing import Annotated

import typer

from reasonloop.cli import api, canary, evals, feedback, index, judge, ops

app = typer.Typer(help="reasonloop: index, reason, evaluate and track an LLM reasoning system.",
                  no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def main(ctx: typer.Context,
         profile: Annotated[str | None, typer.Option(help="configs/profiles/<NAME>.yaml merged over default.yaml",
                                                     envvar="REASONLOOP_PROFILE")] = None,
         verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show Prefect's log lines")] = False) -> None:
    ctx.obj = {"profile": profile, "verbose": verbose}


for group in (evals, index, canary, judge, feedback, api, ops):
    app.add_typer(group.app)
