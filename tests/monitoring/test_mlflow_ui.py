"""A browser in the MLflow UI after a nightly eval: Debian's headless Chromium (installed here when missing), driven
by Playwright through `reasonloop ui` (what `make ui` runs), finds the run, a metric value and the per-question
table. Screenshots go to .test-artifacts/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from reasonloop.settings import Settings

from ..conftest import read_jsonl
from ..support.figures import ARTIFACTS
from ..support.servers import free_port, http_server, reasonloop_env

pytestmark = [pytest.mark.server, pytest.mark.usefixtures("prefect_server")]
# As root, on a closed network: no sandbox, and none of Chromium's own background connections.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium, installed with apt-get when it is missing (Playwright's own browser download would need
    the internet)."""
    if found := shutil.which("chromium"):
        return found
    if not shutil.which("apt-get") or os.geteuid() != 0:
        pytest.skip("the browser test needs Debian's chromium: apt-get install chromium (as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, timeout=600, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"], env=env, check=True,
                   timeout=900, capture_output=True)
    return shutil.which("chromium") or pytest.fail("apt-get installed chromium, but it is not on PATH")


def test_the_mlflow_ui_shows_the_nightly_run_its_metrics_and_questions(
        make_settings: Callable[..., Settings], chromium: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    from flows.nightly_eval import nightly_eval
    from flows.reindex import reindex

    settings = make_settings(safety={"enabled": False})
    reindex(settings)
    report = nightly_eval(settings)
    first_question = read_jsonl(settings.questions.path)[0]["question"]
    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    ui = [str(Path(sys.executable).parent / "reasonloop"), "ui", "--port", str(port)]
    with http_server(ui, f"http://127.0.0.1:{port}/health", settings.state_dir / "ui.log", 120,
                     env=reasonloop_env(settings.state_dir)), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)  # the UI is slow to render on a loaded 2-core machine
            expect.set_options(timeout=60_000)
            run_page = f"http://127.0.0.1:{port}/#/experiments/{report.experiment_id}/runs/{report.run_id}"
            page.goto(run_page, wait_until="load")
            expect(page.get_by_role("heading", name="nightly-eval")).to_be_visible()
            metrics = page.get_by_role("row").filter(has=page.get_by_text("accuracy", exact=True))
            expect(metrics.first).to_contain_text(str(report.metrics["accuracy"]))
            page.screenshot(path=str(ARTIFACTS / "mlflow-ui-run.png"), full_page=True)

            page.goto(f"{run_page}/artifacts", wait_until="load")
            page.get_by_text("eval", exact=True).first.click()
            page.get_by_text("questions.json", exact=True).click()
            expect(page.get_by_text("question_id", exact=True).first).to_be_visible()
            expect(page.get_by_text(first_question[:20]).first).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "mlflow-ui-questions.png"))
        finally:
            browser.close()
    assert (ARTIFACTS / "mlflow-ui-run.png").stat().st_size > 10_000
