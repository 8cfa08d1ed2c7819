"""The Prefect API that schedules run against: a configured one, or a local `prefect server start` under the
state folder (Prefect's temporary server runs no scheduler, so crons never fire there).

Everything here runs before Prefect is imported: Prefect reads PREFECT_API_URL when it is imported.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reasonloop.errors import ProviderError
from reasonloop.monitoring.tracking import process_alive

SERVER_RECORD = "server.json"  # in PREFECT_HOME: the local server `reasonloop serve` started (url, pid)


def record_path(prefect_home: Path) -> Path:
    return prefect_home / SERVER_RECORD


def api_healthy(api_url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout_s) as response:
            return response.status == 200
    except OSError:
        return False


def configured_api_url(api_url: str | None, prefect_home: Path) -> str | None:
    """`api_url` (prefect.api_url), else PREFECT_API_URL, else the local server a running `reasonloop serve`
    recorded under `prefect_home`."""
    if api_url or os.environ.get("PREFECT_API_URL"):
        return api_url or os.environ["PREFECT_API_URL"]
    try:
        record = json.loads(record_path(prefect_home).read_text(encoding="utf-8"))
        recorded, pid = record["api_url"], int(record.get("pid", 0))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    # a gone server refuses at once; a live one on a busy machine may take a while to answer its health check
    deadline = time.monotonic() + (RECORDED_PATIENCE_S if pid and process_alive(pid) else 0.0)
    while True:
        if api_healthy(recorded, timeout_s=10.0):
            return recorded
        if time.monotonic() >= deadline:
            return None
        time.sleep(1.0)


RECORDED_PATIENCE_S = 60.0


def wait_healthy(api_url: str, proc: subprocess.Popen[bytes], timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ProviderError(f"the Prefect server exited with code {proc.returncode} before it answered; "
                                f"its log: {log}")
        if api_healthy(api_url):
            return
        time.sleep(0.5)
    raise ProviderError(f"the Prefect server did not answer {api_url} within {timeout_s:.0f} s; its log: {log}")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@contextmanager
def local_server(prefect_home: Path, port: int, startup_timeout_s: float = 180.0) -> Iterator[str]:
    """`prefect server start` on 127.0.0.1:`port` with its database in the state folder (UI included); yields the
    API URL and stops the server on exit. Its log goes to `<prefect home>/server.log`."""
    if not _port_free(port):
        raise ProviderError(f"port {port} on 127.0.0.1 is taken: stop what runs there, set deployments.server_port, "
                            "or point prefect.api_url at a running Prefect server")
    prefect_home.mkdir(parents=True, exist_ok=True)
    log = prefect_home / "server.log"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update({"PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api"})
    api_url = f"http://127.0.0.1:{port}/api"
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    record = record_path(prefect_home)
    try:
        wait_healthy(api_url, proc, startup_timeout_s, log)
        tmp = record.with_suffix(".tmp")
        tmp.write_text(json.dumps({"api_url": api_url, "pid": proc.pid}), encoding="utf-8")
        tmp.replace(record)
        yield api_url
    finally:
        record.unlink(missing_ok=True)
        stop_process_group(proc)


def stop_process_group(proc: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    """SIGTERM to the process and its children (the server runs uvicorn and its services), then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
