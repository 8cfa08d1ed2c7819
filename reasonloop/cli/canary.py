"""Promotion commands: a candidate model or prompt version beside production (`canary`), and the prompt registry
that prompt promotions move aliases in."""

from __future__ import annotations

from typing import Annotated

import typer

from reasonloop.cli import common
from reasonloop.cli.common import guarded, print_table, settings_of
from reasonloop.settings import Settings

app = typer.Typer()
prompt_app = typer.Typer(help="Prompt templates in MLflow's prompt registry: register versions, move aliases.",
                         no_args_is_help=True)
app.add_typer(prompt_app, name="prompt")


@app.command()
def canary(ctx: typer.Context,
           candidate: Annotated[str, typer.Option(help="a model name, or a prompt version: chain_of_thought@v2")],
           slice_size: Annotated[int | None, typer.Option("--slice", min=2, help="questions (default canary.slice)")]
           = None) -> None:
    """Evaluate CANDIDATE beside production on a slice of the questions; promote it when the gate passes (exit 0),
    else leave production as it was (exit 1)."""
    from flows.canary import canary as canary_flow

    settings = settings_of(ctx)
    report = guarded(lambda: canary_flow(candidate, settings, slice_size))
    print_table("canary", {**report.rows, "MLflow run": report.run_id})
    if not report.metrics["promoted"]:
        raise typer.Exit(1)


def _registry(ctx: typer.Context) -> Settings:
    """The settings, with MLflow's prompt registry pointed at their tracking store."""
    from reasonloop.providers import build_tracker

    settings = settings_of(ctx)
    build_tracker(settings).activate()
    return settings


@prompt_app.command("register")
def prompt_register(ctx: typer.Context) -> None:
    """Register every template in the prompts folder (a text already registered is not duplicated)."""
    from reasonloop.reasoning.prompt_registry import register_prompt
    from reasonloop.reasoning.prompts import load_prompt

    settings = _registry(ctx)
    paths = sorted(settings.prompts.dir.glob("*.yaml"))
    prompts = guarded(lambda: [load_prompt(settings.prompts.dir, path.stem) for path in paths])  # all, or none
    for prompt in prompts:
        version = register_prompt(prompt)
        common.console.print(f"{prompt.ref} ({prompt.sha256[:12]}) -> prompts:/{version.name}/{version.version}")


@prompt_app.command("alias")
def prompt_alias(ctx: typer.Context, name: Annotated[str, typer.Argument(help="prompt name, e.g. chain_of_thought")],
                 alias: Annotated[str, typer.Argument(help="alias, e.g. production")],
                 version: Annotated[int, typer.Argument(min=1, help="the template's own version (vN in the file)")]
                 ) -> None:
    """Point NAME@ALIAS at file version VERSION; configs naming `NAME@ALIAS` use it from their next run."""
    from reasonloop.reasoning.prompt_registry import set_prompt_alias

    _registry(ctx)
    registry_version = guarded(lambda: set_prompt_alias(name, alias, version))
    common.console.print(f"{name}@{alias} -> {name}@v{version} (prompts:/{name}/{registry_version})")
