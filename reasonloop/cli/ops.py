"""Operations commands: serve the flows as Prefect deployments and trigger them, the Prefect and MLflow UIs, the
vitals dashboard and scrape endpoint, and the effective configuration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from reasonloop.cli import common
from reasonloop.cli.common import EXIT_PARTIAL, fail, interruptible, print_table, settings_of, write_atomically
from reasonloop.errors import ReasonloopError
from reasonloop.settings import Settings

app = typer.Typer()
config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


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
    common.err_console.print(f"starting a local Prefect server on 127.0.0.1:{settings.deployments.server_port} "
                             f"(its database: {settings.prefect_home}) ...")
    with local_server(settings.prefect_home, settings.deployments.server_port) as api_url:
        yield api_url


@app.command()
def serve(ctx: typer.Context) -> None:
    """Serve every flow as a Prefect deployment from this process: the crons in `deployments:`, on-demand runs
    (`reasonloop trigger`), and a reindex whenever the corpus folder changes. Starts a local Prefect server under
    the state folder unless prefect.api_url / PREFECT_API_URL names one. Ctrl-C stops it."""
    settings = settings_of(ctx)
    interruptible()
    _serving_environment(ctx, settings)
    os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "INFO" if ctx.obj["verbose"] else "WARNING"
    try:
        with _prefect_api(settings) as api_url:
            os.environ["PREFECT_API_URL"] = api_url  # before Prefect is imported: it reads this once
            from reasonloop.monitoring.tracking import git_commit
            from reasonloop.ops.deployments import deployment_specs, serve_deployments
            from reasonloop.paths import project_root

            table = Table("deployment", "schedule", "trigger", title=f"serving on {api_url}", title_justify="left")
            for spec in deployment_specs(settings.deployments):
                table.add_row(spec.full_name, f"{spec.cron} ({spec.timezone})" if spec.cron else "on demand",
                              f"reasonloop trigger {spec.command}")
            common.console.print(table)
            watch = settings.deployments.watch_corpus
            if watch.enabled:
                common.console.print(f"watching {settings.corpus.path} every {watch.interval_s:g} s: a change starts "
                                     "a reindex run")
            common.console.print(f"Prefect UI: {api_url.removesuffix('/api')}   (Ctrl-C stops serving)")
            serve_deployments(settings.deployments, settings.corpus, version=git_commit(project_root())[:12])
    except ReasonloopError as exc:
        fail(exc)


@app.command()
def trigger(ctx: typer.Context,
            flow: Annotated[str, typer.Argument(help="reindex | eval | eval-live | drift | build-dpo")],
            wait: Annotated[bool, typer.Option("--wait/--no-wait", help="follow the run to its end")] = True) -> None:
    """Start a run of a served deployment and follow it (exit 0 when it completes, 1 otherwise)."""
    from reasonloop.ops.deployments import spec_for
    from reasonloop.ops.prefect_server import configured_api_url

    settings = settings_of(ctx)
    try:
        spec = spec_for(settings.deployments, flow)
    except ReasonloopError as exc:
        fail(exc, 2)
    api_url = configured_api_url(settings.prefect.api_url, settings.prefect_home)
    if api_url is None:
        fail("no Prefect server to start the run on: start `reasonloop serve` (or set prefect.api_url / "
             "PREFECT_API_URL)")
    os.environ["PREFECT_API_URL"] = api_url
    from reasonloop.monitoring.runs import runs_of_flow_run
    from reasonloop.ops.deployments import follow_run, start_run
    from reasonloop.providers import build_tracker

    try:
        run = start_run(spec, tags=["manual"])
    except ReasonloopError as exc:
        fail(exc)
    common.console.print(f"started {spec.full_name}: flow run '{run.name}'  "
                         f"{api_url.removesuffix('/api')}/runs/flow-run/{run.id}", highlight=False, soft_wrap=True)
    if not wait:
        return
    with common.err_console.status(f"{spec.full_name}: scheduled") as status:
        final = follow_run(run.id, lambda p: status.update(
            f"{spec.full_name}: {p.state.lower()} ({p.tasks_done}/{p.tasks_seen} task runs finished)"))
    rows = {"flow run": f"{run.name} ({run.id})", "state": final.name + (f": {final.message}" if final.message
                                                                         else "")}
    tracker = build_tracker(settings)
    for kind, experiment_id, run_id in runs_of_flow_run(tracker, str(run.id)):
        rows[f"MLflow {kind} run"] = tracker.run_url(experiment_id, run_id)
    print_table(f"trigger {flow}", rows)
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

    settings = settings_of(ctx)
    interruptible()
    if running := configured_api_url(settings.prefect.api_url, settings.prefect_home):
        common.console.print(f"a Prefect server already answers: open {running.removesuffix('/api')}")
        return
    try:
        with _prefect_api(settings) as api_url:
            common.console.print(f"Prefect UI on {api_url.removesuffix('/api')} (Ctrl-C stops it)")
            while True:
                time.sleep(3600)
    except ReasonloopError as exc:
        fail(exc)
    except KeyboardInterrupt:
        pass


def _nightly_vitals(settings: Settings, last: int) -> Any:
    from reasonloop.monitoring.runs import recent_runs
    from reasonloop.providers import build_tracker

    return recent_runs(build_tracker(settings), last, kinds=("nightly-eval",), finished_only=True)


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
    from reasonloop.monitoring.vitals import prometheus_text, render_dashboard
    from reasonloop.providers import build_tracker

    settings = settings_of(ctx)
    tracker = build_tracker(settings)
    frame = _nightly_vitals(settings, last)
    out = out or settings.state_dir / "reports" / "vitals.html"
    write_atomically(out, render_dashboard(frame, tracker.run_url,
                                           f"reasonloop vitals: last {len(frame)} nightly evals"))
    common.console.print(f"wrote {out} ({len(frame)} nightly eval runs)")
    if prometheus:
        write_atomically(prometheus, prometheus_text(frame, tracker.experiment_name("nightly-eval")))
        common.console.print(f"wrote {prometheus}")


@app.command()
def metrics(ctx: typer.Context, port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 9464,
            host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1") -> None:
    """A Prometheus scrape endpoint (/metrics): the newest nightly eval's vitals, read from MLflow at every scrape.
    Ctrl-C stops it."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from reasonloop.monitoring.vitals import prometheus_text
    from reasonloop.providers import build_tracker

    settings = settings_of(ctx)
    experiment = build_tracker(settings).experiment_name("nightly-eval")

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
    interruptible()
    common.console.print(f"Prometheus metrics on http://{host}:{port}/metrics (Ctrl-C stops it)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@app.command()
def ui(ctx: typer.Context, port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 5000) -> None:
    """Start the MLflow UI on 127.0.0.1 against the configured tracking store."""
    settings = settings_of(ctx)
    if not settings.mlflow_tracking_uri.startswith("sqlite:"):
        common.console.print(f"the tracking store is a server: open {settings.mlflow_tracking_uri}")
        return
    common.console.print(f"MLflow UI on http://127.0.0.1:{port} (Ctrl-C stops it)")
    raise typer.Exit(subprocess.call([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri",
                                      settings.mlflow_tracking_uri, "--host", "127.0.0.1", "--port", str(port)]))


@config_app.command("show")
def config_show(ctx: typer.Context,
                as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of YAML")] = False) -> None:
    """Print the effective configuration (defaults < profile < env); API keys are shown masked."""
    settings = settings_of(ctx)
    data = settings.public_dict()
    for section in ("llm", "judge"):
        cfg = getattr(settings, section)
        data[section]["api_key"] = f"(set in {cfg.api_key_env})" if cfg.api_key() else f"(not set: {cfg.api_key_env})"
    if as_json:
        common.console.print_json(json.dumps(data))
    else:
        import yaml

        common.console.print(yaml.safe_dump(data, sort_keys=False), highlight=False, end="")
