"""A warm process that forks flow runs on request, so crash trials pay the ~10 s of imports once, not per trial.

Protocol (one JSON object per line on stdin, one reply per line on stdout):
  {"run": "reindex" | "eval", "env": {...}, "log": PATH}
                                             -> {"pid": N}       a child runs the flow with `env` added
  {"wait": N}                                -> {"status": S}    the child's exit: its code, or -signal
Each child is a real process running the real flow; the test kills it with SIGKILL at a point of its choosing.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def run_flow(name: str) -> None:
    from reasonloop.settings import load_settings

    if name == "reindex":
        from flows.reindex import reindex

        reindex(load_settings())
    else:
        from flows.nightly_eval import nightly_eval

        nightly_eval(load_settings())


def main() -> None:
    import importlib

    # the imports every child would otherwise pay for (the project imports these lazily, inside the work)
    for module in ("flows.nightly_eval", "flows.reindex", "great_expectations", "chromadb", "sentence_transformers",
                   "mlflow", "matplotlib.pyplot", "langchain_openai", "bm25s", "scipy.stats", "pypdf"):
        importlib.import_module(module)

    print(json.dumps({"ready": True}), flush=True)  # noqa: T201 - the protocol
    for line in sys.stdin:
        command = json.loads(line)
        if "wait" in command:
            _, status = os.waitpid(int(command["wait"]), 0)
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            print(json.dumps({"status": code}), flush=True)  # noqa: T201
            continue
        pid = os.fork()
        if pid == 0:
            log = os.open(command["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.dup2(log, 1)  # the child's output goes to its log, not into the protocol
            os.dup2(log, 2)
            os.environ.update(command["env"])
            try:
                run_flow(command["run"])
            except BaseException as exc:  # noqa: BLE001 - the child's whole life; report and exit non-zero
                sys.stderr.write(f"child failed: {type(exc).__name__}: {exc}\n")
                os._exit(1)
            os._exit(0)
        print(json.dumps({"pid": pid}), flush=True)  # noqa: T201


if __name__ == "__main__":
    main()


class Zygote:
    """The test's side: start the warm process, fork runs from it, wait for them."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        import subprocess

        self.proc = subprocess.Popen([sys.executable, "-m", "tests.support.zygote"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=log.open("ab"), env=env, text=True,
                                     cwd=Path(__file__).resolve().parents[2])
        assert json.loads(self._read()) == {"ready": True}

    def _read(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the zygote exited ({self.proc.poll()}); see its log")
        return line

    def _ask(self, command: dict[str, object]) -> dict[str, int]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return json.loads(self._read())

    def start(self, flow: str, env: dict[str, str], log: Path) -> int:
        return self._ask({"run": flow, "env": env, "log": str(log)})["pid"]

    def wait(self, pid: int) -> int:
        return self._ask({"wait": pid})["status"]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
