"""Promotion commands: a candidate model or prompt version beside production (`canary`), and the prompt registry
that prompt promotions move aliases in."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from reasonloop.cli import common
from reasonloop.cli.common import guarded, print_table, settings_of
from reasonloop.settings import Settings

if TYPE_CHECKING:
    from reasonloop.evaluation.live_canary import LiveCanary

app = typer.Typer()
canary_app = typer.Typer(help="A candidate model or prompt version beside production: on a slice of the questions "
                              "(`run`), or on a share of live traffic (`start`, `status`, `check`, `stop`).",
                         no_args_is_help=True)
prompt_app = typer.Typer(help="Prompt templates in MLflow's prompt registry: register versions, move aliases.",
                         no_args_is_help=True)
app.add_typer(canary_app, name="canary")
app.add_typer(prompt_app, name="prompt")
CandidateOption = Annotated[str, typer.Option(help="a model name, or a prompt version: chain_of_thought@v2")]


@canary_app.command("run")
def canary_run(ctx: typer.Context, candidate: CandidateOption,
               slice_size: Annotated[int | None, typer.Option("--slice", min=2, help="questions (default "
                                                                                     "canary.slice)")] = None) -> None:
    """Evaluate CANDIDATE beside production on a slice of the questions; promote it when the gate passes (exit 0),
    else leave production as it was (exit 1)."""
    from flows.canary import canary as canary_flow

    settings = settings_of(ctx)
    report = guarded(lambda: canary_flow(candidate, settings, slice_size))
    print_table("canary", {**report.rows, "MLflow run": report.run_id})
    if not report.metrics["promoted"]:
        raise typer.Exit(1)


@canary_app.command("start")
def canary_start(ctx: typer.Context, candidate: CandidateOption,
                 share: Annotated[float | None, typer.Option(min=0.001, max=0.999, help="share of live sessions it "
                                                             "answers (default canary.live.share)")] = None) -> None:
    """Route SHARE of live sessions (sticky per session, else user) to CANDIDATE; the scheduled check (`canary
    check`, the live-canary-check deployment) promotes it, keeps collecting or rolls it back."""
    from datetime import UTC, datetime
    from functools import partial

    from reasonloop.evaluation.canary import parse_candidate, stage_candidate
    from reasonloop.evaluation.live_canary import LIVE_CANARY_FILE, refuse_second, start_canary
    from reasonloop.providers import resolve_prompt

    settings = _registry(ctx)
    path = settings.state_dir / LIVE_CANARY_FILE

    def start() -> LiveCanary:
        spec = parse_candidate(candidate, settings.prompts)
        refuse_second(path)  # before staging: a refused start moves no alias
        changes = stage_candidate(spec, settings.prompts, settings.llm.model, settings.canary.candidate_alias,
                                  partial(resolve_prompt, settings))
        return start_canary(path, spec, changes, share or settings.canary.live.share, datetime.now(UTC))

    canary = guarded(start)
    print_table("live canary started", _state_rows(canary) | {
        "next": "the served endpoint picks it up within serving.reload_s; `reasonloop canary check` decides"})


@canary_app.command("status")
def canary_status(ctx: typer.Context) -> None:
    """The running live canary, if any (exit 1 when none runs)."""
    from reasonloop.evaluation.live_canary import LIVE_CANARY_FILE, read_canary

    canary = guarded(lambda: read_canary(settings_of(ctx).state_dir / LIVE_CANARY_FILE))
    if canary is None:
        common.console.print("no live canary is running (`reasonloop canary start --candidate ...` starts one)")
        raise typer.Exit(1)
    print_table("live canary", _state_rows(canary))


@canary_app.command("check")
def canary_check(ctx: typer.Context) -> None:
    """Judge the running canary's traffic so far and act: promote, keep collecting or roll back (one MLflow run)."""
    _check(settings_of(ctx), stop=False)


@canary_app.command("stop")
def canary_stop(ctx: typer.Context) -> None:
    """End the running canary with production unchanged, logging both arms' figures so far."""
    _check(settings_of(ctx), stop=True)


def _check(settings: Settings, stop: bool) -> None:
    from flows.live_canary import check_live_canary
    from reasonloop.evaluation.live_canary import LIVE_CANARY_FILE, clear_canary

    try:
        report = guarded(lambda: check_live_canary(settings, stop=stop))
    except Exception as exc:
        if not stop:
            raise
        clear_canary(settings.state_dir / LIVE_CANARY_FILE)  # stopping never waits on MLflow or the judge
        common.fail(f"the canary is stopped, but its figures were not logged ({type(exc).__name__}: {exc})")
    if report is None:
        common.console.print("no live canary is running")
        raise typer.Exit(1)
    print_table("live canary check", {**report.rows, "MLflow run": report.run_id})


def _state_rows(canary: LiveCanary) -> dict[str, str]:
    return {"candidate": f"{canary.candidate.spec} ({canary.candidate.kind})", "id": canary.id,
            "share": f"{canary.share:.1%} of sessions", "started": f"{canary.started_at:%Y-%m-%d %H:%M:%S} UTC"}


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
