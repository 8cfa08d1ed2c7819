"""The served endpoint: `reasonloop api` answers live questions over HTTP, traced into MLflow."""

from __future__ import annotations

from typing import Annotated

import typer

from reasonloop.cli import common
from reasonloop.cli.common import settings_of

app = typer.Typer()


@app.command()
def api(ctx: typer.Context,
        host: Annotated[str | None, typer.Option(help="interface (default serving.host)")] = None,
        port: Annotated[int | None, typer.Option(help="port (default serving.port)")] = None) -> None:
    """Serve the question-answering endpoint (POST /v1/ask, POST /v1/feedback, GET /healthz, /readyz, /metrics) with
    the production prompts and model over the serving index. Every request becomes an MLflow trace in
    <prefix>-live and feedback an assessment on it. Ctrl-C or SIGTERM stops it after exporting what it acknowledged."""
    import uvicorn

    from reasonloop.providers import build_live_service
    from reasonloop.serving.app import create_app

    settings = settings_of(ctx)
    profile = ctx.obj["profile"]
    service = build_live_service(settings, lambda: common.load_settings(profile))
    host, port = host or settings.serving.host, port or settings.serving.port
    common.console.print(f"reasonloop api on http://{host}:{port} (traces: MLflow {settings.mlflow_tracking_uri}, "
                         f"experiment {settings.mlflow.experiment_prefix}-live)", highlight=False, soft_wrap=True)
    uvicorn.run(create_app(service), host=host, port=port, log_level="info" if ctx.obj["verbose"] else "warning",
                access_log=ctx.obj["verbose"], timeout_graceful_shutdown=30)
