"""No secret in what the flows leave behind. With a recognizable API key in the environment and in use (the reasoner
and the judge call a scripted OpenAI-compatible server that sees it as `Authorization: Bearer ...`), a webhook URL
with a token behind `drift.webhook_url_env`, and calls that fail with a 401 whose body echoes the Authorization
header, every flow runs: reindex, two nightly evals (each followed by the
drift flow; the second one drifts and posts to the webhook), `reasonloop judge calibrate`, a canary, build-dpo, and
`reasonloop review export`, `report --prometheus` and `config show`; a `base_url` with a password in it is refused
by the configuration without being echoed (a URL is logged everywhere). Then the MLflow store (database values and
artifacts), Prefect's database and home folder, the whole state folder, the exports, the captured log records and
terminal output are scanned for each secret, raw and in base64."""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from reasonloop.settings import Settings, load_settings

from ..conftest import ROOT, read_jsonl, write_jsonl
from ..support.figures import record_figures
from ..support.leakscan import Scan, Secret, texts_of_records
from ..support.openai_server import OpenAIServer, Reply, system_text, user_text

pytestmark = pytest.mark.usefixtures("prefect_server")

_SUFFIX = secrets.token_hex(16)
API_KEY = Secret("api key", f"sk-test-LEAKCHECK-{_SUFFIX}", (_SUFFIX,))
_PASSWORD_SUFFIX = secrets.token_hex(8)
URL_PASSWORD = Secret("base_url password", f"s3cr3t-LEAKCHECK-{_PASSWORD_SUFFIX}", (_PASSWORD_SUFFIX,))
SHOWN_CONFIG = "reasonloop with a password in llm.base_url"  # the label of what the CLI printed when it refused it
_HOOK_SUFFIX = secrets.token_hex(8)
HOOK_TOKEN = Secret("webhook token", f"hooktoken-LEAKCHECK-{_HOOK_SUFFIX}", (_HOOK_SUFFIX,))
HOOK_ENV = "LEAKCHECK_DRIFT_HOOK_URL"  # a name that does not say "secret": the URL must be kept out by design
CALIBRATION = ROOT / "data" / "judge" / "summedits_sample.jsonl"


class EchoServer(OpenAIServer):
    """The scripted server, also telling the responder the headers of the request it answers."""

    def __init__(self, responder: Callable[[dict[str, Any]], Reply]) -> None:
        super().__init__(responder)
        local = self.local = threading.local()
        base = self._server.RequestHandlerClass

        class Handler(base):  # type: ignore[valid-type,misc]
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                local.headers = {k.lower(): v for k, v in self.headers.items()}
                super().do_POST()

        self._server.RequestHandlerClass = Handler

    @property
    def authorization(self) -> str:
        return str(self.local.headers.get("authorization", ""))


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A chat-style webhook on 127.0.0.1 whose URL carries a token (path and query); yields (URL, POSTs received)."""
    received: list[dict[str, Any]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            received.append({"path": self.path, "body": self.rfile.read(int(self.headers["Content-Length"])).decode()})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield (f"http://127.0.0.1:{server.server_port}/hooks/T000/B000/{HOOK_TOKEN.value}?token={HOOK_TOKEN.value}",
               received)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0] if start in text else ""


def denied(authorization: str) -> Reply:
    """A 401 whose body echoes the credentials it got, as some gateways do (in the message and as a header dict)."""
    return Reply(status=401, body=json.dumps({"error": {
        "message": f"Incorrect API key provided. You sent: Authorization: {authorization}",
        "type": "invalid_request_error", "code": "invalid_api_key",
        "request_headers": {"authorization": authorization}}}))


@dataclass
class Script:
    """What the scripted server answers: the reasoner fails on some questions, the judge on others (and on one
    calibration pair); in the `long` phase answers get long, so the drift flow sees the answer length shift."""

    references: dict[str, str]
    reasoner_fails: set[str]
    judge_fails: set[str]
    calibration_fails: set[str]
    long: bool = False
    server: EchoServer | None = None

    def __call__(self, request: dict[str, Any]) -> Reply:
        assert self.server is not None
        system, text = system_text(request), user_text(request)
        question = between(text, "<question>", "</question>")
        if "comparing two candidate answers" in system:
            return Reply(content=json.dumps({"winner": "tie", "reason": "both the same"}))
        if "strict evaluator" in system:
            answer = between(text, "<answer>", "</answer>")
            if question in self.judge_fails or answer in self.calibration_fails:
                return denied(self.server.authorization)
            return Reply(content=json.dumps({"correct": True, "score": 1.0, "relevance": 1.0, "reason": "matches",
                                             "claims": [{"claim": answer[:40], "supported": True}]}))
        if question in self.reasoner_fails:
            return denied(self.server.authorization)
        chunk = between(text, '<chunk id="', '"')
        answer = self.references.get(question, "I do not know")
        if self.long:
            answer += ", as the quoted context states at some length in its second paragraph" * 4
        return Reply(content=json.dumps({"answer": answer, "citations": [chunk] if chunk else [], "confidence": 0.8,
                                         "reasoning": {"problem": "p", "context": "c", "steps": ["s"],
                                                       "verification": "v"}}))


@dataclass
class Evidence:
    files: Scan  # the state folder, the exports, Prefect's home and database
    texts: Scan  # log records, terminal output, CLI output, webhook bodies
    captured: dict[str, str]  # what `texts` scanned, by label
    roots: dict[str, Path]
    headers: list[dict[str, str]]
    received: list[dict[str, Any]]
    eval_params: list[dict[str, str]]
    answer_errors: list[str]
    judge_errors: list[str]
    drift_tags: dict[str, str]
    seconds: float


_EVIDENCE: dict[str, Evidence] = {}
_VERBOSE = ("openai", "httpx", "httpcore", "langchain", "urllib3", "mlflow", "reasonloop", "tasks", "flows")


@contextmanager
def every_log_record(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """caplog at DEBUG on the root logger and on the loggers that would say the most (the HTTP clients, the SDKs,
    MLflow, ours, Prefect's flow and task run loggers), also those that do not propagate to the root (MLflow's)."""
    root = logging.getLogger()
    if caplog.handler not in root.handlers:  # Prefect's dictConfig, run at its import, drops the root's handlers
        root.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG)
    # the terminal shows what `reasonloop -v` would (INFO and up): DEBUG lines rendered by Prefect's console handler
    # would double the run time, and caplog holds every record anyway
    consoles = {h: h.level for h in root.handlers if h is not caplog.handler}
    for handler in consoles:
        handler.setLevel(max(handler.level, logging.INFO))
    names = {n for n in logging.root.manager.loggerDict if n.split(".")[0].startswith(_VERBOSE)}
    attached = []
    for name in sorted(names | {"openai", "httpx", "httpcore", "prefect.flow_runs", "prefect.task_runs"}):
        caplog.set_level(logging.DEBUG, logger=name)
        logger = logging.getLogger(name)
        if not logger.propagate and caplog.handler not in logger.handlers:
            logger.addHandler(caplog.handler)
            attached.append(logger)
    try:
        yield
    finally:
        for logger in attached:
            logger.removeHandler(caplog.handler)
        for handler, level in consoles.items():
            handler.setLevel(level)


@contextmanager
def restored_environment() -> Iterator[None]:
    """The CLI points Prefect and MLflow at its state folder through os.environ (apply_environment): undo that."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        os.environ.update(saved)


def flush_prefect() -> None:
    """Send the log lines and events still queued in this process to the Prefect server."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    EventsWorker.drain_all(timeout=30)


def prefect_database_dir() -> Path:
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    url = str(PREFECT_SERVER_DATABASE_CONNECTION_URL.value())
    assert url.startswith("sqlite+aiosqlite:///"), url
    return Path(url.removeprefix("sqlite+aiosqlite:///")).parent


def results_of(client: Any, run_id: str, tmp: Path) -> list[dict[str, Any]]:
    path = Path(client.download_artifacts(run_id, "eval/results.jsonl", str(tmp)))
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    shutil.rmtree(tmp)
    return rows


def run_every_flow(make_settings: Callable[..., Settings], tiny_data: tuple[Path, Path], tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                   capsys: pytest.CaptureFixture[str]) -> Evidence:
    import time

    from mlflow import MlflowClient
    from prefect.settings import PREFECT_HOME
    from rich.console import Console
    from typer.testing import CliRunner

    from flows.build_dpo import build_dpo
    from flows.canary import canary
    from flows.nightly_eval import nightly_eval
    from flows.reindex import reindex
    from reasonloop.cli import app

    started = time.perf_counter()
    questions = read_jsonl(tiny_data[1])
    pairs = read_jsonl(CALIBRATION)[:6]
    calibration = write_jsonl(tmp_path / "labeled.jsonl", pairs)
    script = Script(references={q["question"]: q["reference"] for q in questions},
                    reasoner_fails={questions[0]["question"], questions[5]["question"]},
                    judge_fails={questions[2]["question"]}, calibration_fails={pairs[1]["summary"]})
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY.value)
    outputs_dir = tmp_path / "outputs"
    outputs_dir.mkdir()
    captured: dict[str, str] = {}

    with webhook_receiver() as (hook_url, received), EchoServer(script) as server, every_log_record(caplog):
        script.server = server
        monkeypatch.setenv(HOOK_ENV, hook_url)
        plain = server.base_url
        with_password = plain.replace("http://", f"http://leakuser:{URL_PASSWORD.value}@")

        def endpoint(model: str, base_url: str) -> dict[str, Any]:
            return {"provider": "openai", "model": model, "base_url": base_url, "max_retries": 0, "timeout_s": 20}

        sections: dict[str, Any] = {
            "llm": endpoint("test-model", plain), "judge": {**endpoint("judge-model", plain),
                                                            "calibration_data": [str(calibration)]},
            "safety": {"enabled": False}, "canary": {"slice": 6},
            "gate": {"max_missing_fraction": 1.0},  # the failing calls are the point here, not a regression
            "drift": {"min_samples": 5, "webhook_url_env": HOOK_ENV},
            "preferences": {"feedback_dir": str(tmp_path / "feedback"), "test_fraction": 0.3}}
        settings = make_settings(**sections)

        reindex(settings)
        first = nightly_eval(settings)  # the drift flow after it has no reference yet
        script.long = True  # the second eval answers at length: output.answer_length drifts, the webhook fires
        # another model: its answers are not the cached ones of the first eval
        second = nightly_eval(make_settings(**{**sections, "llm": endpoint("test-model-verbose", plain)}))
        script.long = False
        canary("candidate-model", settings)
        write_jsonl(tmp_path / "feedback" / "sample.jsonl",
                    [{**row, "source_run_id": first.run_id} for row in read_jsonl(ROOT / "data" / "feedback" /
                                                                                    "sample.jsonl")])
        build_dpo(settings)

        # the CLI loads its own settings: the same sections and state folder through the environment
        with restored_environment():
            monkeypatch.setenv("REASONLOOP_STATE_DIR", str(settings.state_dir))
            corpus_dir, questions_file = tiny_data
            for name, value in {"corpus": {"path": str(corpus_dir)}, "questions": {"path": str(questions_file)},
                                "eval": {"batch_size": 8},
                                "quality": {"datasets": {"squad_sample": {"questions": str(questions_file),
                                                                          "corpus": str(corpus_dir)}}},
                                **sections}.items():
                monkeypatch.setenv(f"REASONLOOP_{name.upper()}", json.dumps(value))
            assert load_settings().public_dict() == settings.public_dict()
            monkeypatch.setattr("reasonloop.cli.common.console", Console(width=4000))  # no wrapped lines
            monkeypatch.setattr("reasonloop.cli.common.err_console", Console(width=4000, stderr=True))
            commands = {"judge calibrate": ["judge", "calibrate", "--data", str(calibration)],
                        "review export": ["review", "export", str(outputs_dir / "review.csv")],
                        "review export (jsonl)": ["review", "export", str(outputs_dir / "review.jsonl")],
                        "report --prometheus": ["report", "--prometheus", str(outputs_dir / "vitals.prom")],
                        "config show": ["config", "show"]}
            for label, args in commands.items():
                result = CliRunner().invoke(app, args)
                captured[f"reasonloop {label}"] = result.output
                assert result.exit_code == 0, (label, result.output, result.exception)
            monkeypatch.setenv("REASONLOOP_LLM", json.dumps(endpoint("test-model", with_password)))
            for command in (["config", "show", "--json"], ["eval"]):
                refused = CliRunner().invoke(app, command)
                captured[f"{SHOWN_CONFIG}: {' '.join(command)}"] = refused.output
                assert refused.exit_code == 2, refused.output
        flush_prefect()
        headers = list(server.headers)

    client = MlflowClient(settings.mlflow_tracking_uri)
    rows = [*results_of(client, first.run_id, tmp_path / "dl"), *results_of(client, second.run_id, tmp_path / "dl")]
    drift_run_id = client.get_run(second.run_id).data.tags["reasonloop.drift.run_id"]
    out = capsys.readouterr()
    captured |= {"stdout": out.out, "stderr": out.err}
    captured |= {f"log record {n}": text for n, text in enumerate(texts_of_records(caplog.records))}
    captured |= {f"webhook POST {n}": post["body"] for n, post in enumerate(received)}

    roots = {"state": settings.state_dir, "outputs": outputs_dir, "prefect home": Path(str(PREFECT_HOME.value())),
             "prefect database": prefect_database_dir()}
    files, texts = Scan([API_KEY, URL_PASSWORD, HOOK_TOKEN]), Scan([API_KEY, URL_PASSWORD, HOOK_TOKEN])
    for label, root in roots.items():
        files.tree(root, label)
    for label, text in captured.items():
        texts.text(label, text)
    return Evidence(files=files, texts=texts, captured=captured, roots=roots, headers=headers, received=received,
                    eval_params=[client.get_run(r.run_id).data.params for r in (first, second)],
                    answer_errors=[r["answer"]["error"] for r in rows if r["answer"]["error"]],
                    judge_errors=[r["verdict"]["judge_error"] for r in rows
                                  if r["verdict"] and r["verdict"]["judge_error"]],
                    drift_tags=client.get_run(drift_run_id).data.tags, seconds=time.perf_counter() - started)


@pytest.fixture
def evidence(make_settings: Callable[..., Settings], tiny_data: tuple[Path, Path], tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
             capsys: pytest.CaptureFixture[str]) -> Evidence:
    """The flows run once (for the first test asking for them); each test checks a part of what they left."""
    if "run" not in _EVIDENCE:
        _EVIDENCE["run"] = run_every_flow(make_settings, tiny_data, tmp_path, monkeypatch, caplog, capsys)
    return _EVIDENCE["run"]


def authorization(headers: dict[str, str]) -> str:
    return next((v for k, v in headers.items() if k.lower() == "authorization"), "")


def test_the_key_was_in_use_and_failed_calls_stored_its_echo(evidence: Evidence) -> None:
    bearer = [h for h in evidence.headers if authorization(h) == f"Bearer {API_KEY.value}"]
    assert len(bearer) >= 40, f"{len(bearer)} of {len(evidence.headers)} requests carried the key"
    # 2 questions failed per eval, 1 verdict per eval: each stored error is the 401 with its echo scrubbed
    assert len(evidence.answer_errors) == 4 and len(evidence.judge_errors) == 2
    for error in [*evidence.answer_errors, *evidence.judge_errors]:
        assert "401" in error and "You sent: Authorization: ***" in error, error
    review = (evidence.roots["outputs"] / "review.csv").read_text(encoding="utf-8")
    assert review.count("failed: ") >= 2 and "Authorization: ***" in review
    assert evidence.received and evidence.drift_tags["drift.webhook"] == "sent"  # the webhook path ran
    assert "output.answer_length" in evidence.drift_tags["drift.signals"].split(",")
    assert "(set in OPENAI_API_KEY)" in evidence.captured["reasonloop config show"]


def test_the_api_key_is_nowhere(evidence: Evidence) -> None:
    files, texts = evidence.files, evidence.texts
    bearer = sum(authorization(h) == f"Bearer {API_KEY.value}" for h in evidence.headers)
    record_figures("secrets-scan", {"files": files.files, "bytes": files.bytes, "texts": texts.texts,
                                    "requests": len(evidence.headers), "requests_with_the_key": bearer,
                                    "seconds": evidence.seconds})
    assert files.files > 50 and files.bytes > 1_000_000 and texts.texts > 1000, (files.files, files.bytes, texts.texts)
    assert not files.where(API_KEY.name), f"the API key was stored:\n{files.report(API_KEY.name)}"
    assert not texts.where(API_KEY.name), f"the API key was logged or printed:\n{texts.report(API_KEY.name)}"


def test_the_webhook_token_is_nowhere(evidence: Evidence) -> None:
    assert [p["path"] for p in evidence.received] == [f"/hooks/T000/B000/{HOOK_TOKEN.value}?token={HOOK_TOKEN.value}"]
    assert not evidence.files.where(HOOK_TOKEN.name), evidence.files.report(HOOK_TOKEN.name)
    assert not evidence.texts.where(HOOK_TOKEN.name), evidence.texts.report(HOOK_TOKEN.name)


def test_the_logged_base_url_is_the_plain_one(evidence: Evidence) -> None:
    for params in evidence.eval_params:
        assert params["llm.base_url"].startswith("http://127.0.0.1:") and params["llm.base_url"].endswith("/v1")


def test_a_base_url_with_a_password_is_refused_without_echoing_it(evidence: Evidence) -> None:
    refusals = {label: text for label, text in evidence.captured.items() if label.startswith(SHOWN_CONFIG)}
    assert len(refusals) == 2
    for text in refusals.values():
        assert "llm.base_url" in text and "holds credentials" in text and "api_key_env" in text, text


def test_the_url_password_is_nowhere(evidence: Evidence) -> None:
    assert not evidence.files.where(URL_PASSWORD.name), evidence.files.report(URL_PASSWORD.name)
    assert not evidence.texts.where(URL_PASSWORD.name), evidence.texts.report(URL_PASSWORD.name)
