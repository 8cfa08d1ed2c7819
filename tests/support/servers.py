"""Real servers for tests: started on 127.0.0.1 with a free port, always stopped (even when a test fails)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


def wait_for(what: str, probe: Callable[[], Any], timeout_s: float, log: Path, poll_s: float = 2.0) -> Any:
    """`probe()`'s first truthy result; past the deadline, an error that `what` did not happen, with the log's tail."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := probe():
            return found
        time.sleep(poll_s)
    raise AssertionError(f"{what} within {timeout_s:.0f} s; log:\n{log.read_text(errors='replace')[-4000:]}")


@contextmanager
def background(cmd: list[str], log: Path, env: dict[str, str], cwd: Path | None = None,
               stop: signal.Signals = signal.SIGINT) -> Iterator[subprocess.Popen]:
    """A long-running command in its own process group, stopped with all its children on exit: `stop` (SIGINT,
    as Ctrl-C sends), then SIGKILL."""
    out = log.open("ab")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
    try:
        yield proc
    finally:
        for sig, wait_s in ((stop, 60), (signal.SIGKILL, 10)):  # a loaded machine shuts down slowly
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, sig)
                proc.wait(wait_s)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # children left behind by a clean exit
        except ProcessLookupError:
            pass
        out.close()


def reasonloop_env(state_dir: Path, **sections: object) -> dict[str, str]:
    """The environment of a reasonloop child process: this one's without Prefect's or MLflow's variables, the
    state folder, and each config section as one JSON value (merged over the YAML files)."""
    import json
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "REASONLOOP_"))}
    env.update({"REASONLOOP_STATE_DIR": str(state_dir), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    env.update({f"REASONLOOP_{key.upper()}": json.dumps(value, default=str) for key, value in sections.items()})
    return env


@contextmanager
def http_server(cmd: list[str], health_url: str, log: Path, timeout_s: float, env: dict[str, str] | None = None
                ) -> Iterator[subprocess.Popen]:
    """`background(cmd)`, yielded once `health_url` answers."""
    import os

    with background(cmd, log, env if env is not None else dict(os.environ)) as proc:
        wait_http(health_url, timeout_s, proc)
        yield proc


@contextmanager
def chroma_server(data_dir: Path, bin_dir: Path) -> Iterator[int]:
    """`chroma run` on a free port; yields the port."""
    port = free_port()
    with http_server([str(bin_dir / "chroma"), "run", "--path", str(data_dir), "--host", "127.0.0.1", "--port",
                      str(port)], f"http://127.0.0.1:{port}/api/v2/heartbeat", data_dir.parent / "chroma-server.log",
                     60):
        yield port


@contextmanager
def mlflow_server(workdir: Path, bin_dir: Path) -> Iterator[str]:
    """`mlflow server` with a SQLite database and proxied artifacts on a free port; yields its URI."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    with http_server([str(bin_dir / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
                      "--artifacts-destination", str(workdir / "artifacts"), "--host", "127.0.0.1", "--port",
                      str(port), "--workers", "1"], f"http://127.0.0.1:{port}/health", workdir / "mlflow-server.log",
                     180):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def dask_cluster(bin_dir: Path, workdir: Path, workers: int = 2, timeout_s: float = 180) -> Iterator[Any]:
    """`dask scheduler` and `dask worker --nworkers N --nthreads 1` on 127.0.0.1 (free ports, no dashboards, both
    stopped on exit); yields a `distributed.Client` connected once all N workers have registered."""
    from distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    workdir.mkdir(parents=True, exist_ok=True)
    with background([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                     "--no-dashboard"], workdir / "dask-scheduler.log", env, cwd=workdir), \
            background([str(bin_dir / "dask"), "worker", address, "--host", "127.0.0.1", "--nworkers", str(workers),
                        "--nthreads", "1", "--no-dashboard", "--local-directory", str(workdir / "dask-worker")],
                       workdir / "dask-worker.log", env, cwd=workdir), \
            Client(address, timeout=timeout_s) as client:
        wait_for(f"{workers} Dask workers registered", lambda: len(client.nthreads()) >= workers, timeout_s,
                 workdir / "dask-worker.log", poll_s=0.5)
        yield client
