"""A catalogue of malformed inputs, each driven through the CLI in-process: every one must end in (a) one message
naming the place (file:line and field, the config key, or the CLI option), (b) a non-zero exit code, and (c) nothing
written — the case folder (inputs, outputs, the state folder) is compared file by file (names, sizes, mtimes) before
and after; a fresh state folder may hold no more than what loading the settings and opening the MLflow store create.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import mlflow
import pytest
from click.testing import Result
from typer.testing import CliRunner

from reasonloop.cli import app

from ..conftest import ROOT, SAMPLE_CORPUS, SAMPLE_QUESTIONS, read_jsonl, write_jsonl

pytestmark = pytest.mark.usefixtures("prefect_server")
runner = CliRunner()

# The tiny_data fixture's selection (12 paragraphs and their questions), for the module's one index build.
TINY = read_jsonl(SAMPLE_CORPUS)[:12]
TINY_QUESTIONS = [q for q in read_jsonl(SAMPLE_QUESTIONS) if set(q["gold_doc_ids"]) <= {r["id"] for r in TINY}]
TRAVERSAL_ID = "../../etc/passwd"  # accepted as a document id: ids are data (Chroma ids, JSON keys), never paths
TRAVERSAL_DOC = {"id": TRAVERSAL_ID, "title": "passwd", "text": "The root account's login shell is bash. " * 4}
GOOD_ROW = {"question_id": "q1", "question": "Who won Super Bowl 50?", "answer": "Denver",
            "timestamp": "2025-11-22T10:00:00Z"}
UNKNOWN_RUN = "f" * 32


def jsonl(*records: object) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def feedback(**fields: object) -> str:
    return json.dumps({**GOOD_ROW, "rating": "up", **fields})


# --- what "nothing written" means ------------------------------------------------------------------------------


def _sqlite_rows(path: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:  # read-only: looking must not write
        return db.execute(query).fetchall()


def snapshot(folder: Path) -> dict[str, object]:
    """Every file and folder under `folder`: files by (size, mtime_ns). Two exceptions, both about what a reader
    leaves behind: a `.lock` file counts by size only (taking the lock rewrites it and truncates it back to empty),
    and Chroma's `chroma.sqlite3` by its collections and embedding count (every client that opens the store records
    an `acquire_write` row, reading included)."""
    found: dict[str, object] = {}
    for path in sorted(folder.rglob("*")) if folder.exists() else []:
        rel = path.relative_to(folder).as_posix()
        if path.is_dir():
            found[rel + "/"] = "dir"
        elif path.name == ".lock":
            found[rel] = path.stat().st_size
        elif path.name == "chroma.sqlite3":
            found[rel] = (_sqlite_rows(path, "SELECT name FROM collections ORDER BY name"),
                          _sqlite_rows(path, "SELECT count(*) FROM embeddings"))
        else:
            found[rel] = (path.stat().st_size, path.stat().st_mtime_ns)
    return found


def changes(before: dict[str, object], after: dict[str, object]) -> dict[str, tuple[object, object]]:
    keys = sorted(before.keys() | after.keys())
    return {k: (before.get(k), after.get(k)) for k in keys if before.get(k) != after.get(k)}


def left_in_fresh_state(state: Path) -> list[str]:
    """What a failed command left in a state folder that did not exist before it: the folder itself (loading the
    settings creates it) and an MLflow store that only opening created (the Default experiment, no run, no registered
    model or prompt) are allowed; anything else is listed."""
    left: list[str] = []
    for path in sorted(state.iterdir()) if state.exists() else []:
        if path.name != "mlflow.db":
            left.append(path.name)
            continue
        left += [f"mlflow experiment {name}" for (name,) in _sqlite_rows(path, "SELECT name FROM experiments")
                 if name != "Default"]
        left += [f"mlflow run {run_id}" for (run_id,) in _sqlite_rows(path, "SELECT run_uuid FROM runs")]
        left += [f"mlflow model/prompt {name}" for (name,) in _sqlite_rows(path, "SELECT name FROM registered_models")]
    return left


# --- running the CLI in-process as a fresh process would -------------------------------------------------------


def invoke(args: list[str], env: Mapping[str, str]) -> Result:
    for key, value in env.items():
        os.environ[key] = value
    return runner.invoke(app, args, terminal_width=200)


def error_text(result: Result) -> str:
    """The CLI's own message: from its last "error:" on (in-process, Prefect's log lines share the stream)."""
    at = result.output.rfind("error:")
    return result.output[at:] if at >= 0 else result.output


def default_env(case_dir: Path) -> dict[str, str]:
    return {"REASONLOOP_STATE_DIR": str(case_dir / "state"),
            "REASONLOOP_CORPUS__PATH": str(case_dir / "corpus"),
            "REASONLOOP_QUESTIONS__PATH": str(case_dir / "questions.jsonl"),
            "REASONLOOP_PREFERENCES__FEEDBACK_DIR": str(case_dir / "feedback"),
            # dict-valued sections take one JSON value; the retrieval floors are measured on the tiny questions
            "REASONLOOP_QUALITY": json.dumps({"datasets": {"squad_sample": {"questions":
                                                                            str(case_dir / "questions.jsonl")}}})}


@pytest.fixture(scope="module")
def template_state(prefect_server: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A state folder as a user has it after `reasonloop reindex` (the module's one index build: the 12 tiny
    paragraphs plus a document whose id looks like a path), its MLflow store holding the reindex run and the
    nightly-eval experiment (as once an eval has started); cases copy it."""
    from reasonloop.providers import build_tracker
    from reasonloop.settings import load_settings

    base = tmp_path_factory.mktemp("template")
    write_jsonl(base / "corpus" / "tiny.jsonl", [*TINY, TRAVERSAL_DOC])
    write_jsonl(base / "questions.jsonl", TINY_QUESTIONS)
    saved = dict(os.environ)
    try:
        result = invoke(["reindex"], default_env(base))
        assert result.exit_code == 0, result.output
        build_tracker(load_settings(state_dir=base / "state")).ensure_experiment("nightly-eval")
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        os.environ.clear()
        os.environ.update(saved)
    state = base / "state"
    before = snapshot(state)
    yield state
    assert changes(before, snapshot(state)) == {}, "a case wrote into the template state instead of its own copy"


# --- the catalogue -------------------------------------------------------------------------------------------------

Prepare = Callable[[Path], None]


@dataclass(frozen=True)
class Case:
    """One malformed input. Paths in `args`, `env` and `expect` may use {d}: the case's folder (inputs go there,
    the state folder is {d}/state; corpus {d}/corpus, questions {d}/questions.jsonl, feedback {d}/feedback by
    default, pre-filled with the tiny corpus and its questions). `state`: "none" = the settings must fail (no state
    folder at all), "fresh" = no state folder before, "existing" = a copy of the template state."""

    args: tuple[str, ...]
    expect: tuple[str, ...]
    code: int = 1
    files: Mapping[str, str | bytes] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    state: Literal["none", "fresh", "existing"] = "fresh"
    prepare: Prepare | None = None


def root_copy(**files: str) -> Prepare:
    """A project root {d}/root with a copy of configs/ (for REASONLOOP_ROOT) plus `files` (path -> text)."""
    def prepare(case_dir: Path) -> None:
        shutil.copytree(ROOT / "configs", case_dir / "root" / "configs")
        for rel, text in files.items():
            (case_dir / "root" / rel).write_text(text, encoding="utf-8")
    return prepare


def prompts_copy(edit: Callable[[Path], None] | None = None) -> Prepare:
    """{d}/prompts: a copy of configs/prompts (with VERSIONS.lock), then `edit` applied to it."""
    def prepare(case_dir: Path) -> None:
        shutil.copytree(ROOT / "configs" / "prompts", case_dir / "prompts")
        if edit:
            edit(case_dir / "prompts")
    return prepare


def edit_template(name: str, old: str, new: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        path = folder / f"{name}.yaml"
        text = path.read_text(encoding="utf-8")
        assert old in text
        path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return edit


def outside_template(folder: Path) -> None:
    """A valid template beside the prompts folder, where '../outside' would reach."""
    shutil.copy(folder / "chain_of_thought.yaml", folder.parent / "outside.yaml")


def write_into_state(rel: str, text: str) -> Prepare:
    def prepare(case_dir: Path) -> None:
        (case_dir / "state" / rel).write_text(text, encoding="utf-8")
    return prepare


REINDEX = ("reindex",)
EVAL = ("eval",)
BUILD_DPO = ("build-dpo",)
PROMPTS_DIR = {"REASONLOOP_PROMPTS__DIR": "{d}/prompts"}
ROOT_ENV = {"REASONLOOP_ROOT": "{d}/root"}
FEEDBACK_ADD = ("feedback", "add", "--question-id", "q1", "--question", "Who won?", "--answer", "Denver")
TWELVE = "1 of 13 inputs are bad (7.7%, over corpus.max_bad_fraction = 5.0%); nothing was indexed"


CASES = [
    # corpus files (reindex): one bad input beside the 12 good paragraphs is over the 5% allowed
    pytest.param(Case(REINDEX, (TWELVE, "bad.jsonl:2: not valid UTF-8 at byte"),
                      files={"corpus/bad.jsonl": b'{"id": "ok", "text": "fine"}\n{"id": "x", "text": "caf\xe9"}\n'}),
                 id="corpus-non-utf8-byte"),
    pytest.param(Case(REINDEX, (TWELVE, "bad.jsonl:1: missing required field 'text'"),
                      files={"corpus/bad.jsonl": jsonl({"id": "x", "title": "no text"})}),
                 id="corpus-record-missing-text"),
    pytest.param(Case(REINDEX, (TWELVE, "bad.jsonl:1: field 'text' must be a string, got list"),
                      files={"corpus/bad.jsonl": jsonl({"id": "x", "text": ["a", "b"]})}),
                 id="corpus-text-wrong-type"),
    pytest.param(Case(REINDEX, (TWELVE, "bad.jsonl:1: field 'id': String should have at least 1 character"),
                      files={"corpus/bad.jsonl": jsonl({"id": "  ", "text": "an id of blanks"})}),
                 id="corpus-blank-id"),
    pytest.param(Case(REINDEX, (TWELVE, "bad.jsonl:1: expected a JSON object, got list"),
                      files={"corpus/bad.jsonl": jsonl("[1, 2]")}),
                 id="corpus-record-not-an-object"),
    pytest.param(Case(REINDEX, (TWELVE, "z_copy.jsonl:1: duplicate id 'Super_Bowl_50#0' (the first one in path "
                                "order is kept)"),
                      files={"corpus/z_copy.jsonl": jsonl({"id": "Super_Bowl_50#0", "text": "another text"})}),
                 id="corpus-duplicate-id"),
    pytest.param(Case(REINDEX, (TWELVE, "image.txt: binary content (NUL bytes): not a text file"),
                      files={"corpus/image.txt": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"}),
                 id="corpus-binary-file"),
    pytest.param(Case(REINDEX, (TWELVE, "big.txt: file is 20,000 bytes, over corpus.max_file_bytes (10,000)"),
                      files={"corpus/big.txt": "word " * 4000}, env={"REASONLOOP_CORPUS__MAX_FILE_BYTES": "10000"}),
                 id="corpus-file-over-max-file-bytes"),
    pytest.param(Case(REINDEX, (TWELVE, "huge.jsonl:1: text over corpus.max_doc_chars (5,000)"),
                      files={"corpus/huge.jsonl": jsonl({"id": "huge", "text": "word " * 2000})},
                      env={"REASONLOOP_CORPUS__MAX_DOC_CHARS": "5000"}),
                 id="corpus-document-over-max-doc-chars"),
    pytest.param(Case(REINDEX, ("3 of 15 inputs are bad (20.0%, over corpus.max_bad_fraction = 10.0%)",
                                "latin1.txt: not valid UTF-8 at byte 3", "empty.md: empty file",
                                "broken.json:1: malformed JSON"),
                      files={"corpus/latin1.txt": b"caf\xe9 au lait", "corpus/empty.md": "",
                             "corpus/broken.json": "{oops", "corpus/notes.csv": "ignored,not included\n"},
                      env={"REASONLOOP_CORPUS__MAX_BAD_FRACTION": "0.1"}),
                 id="corpus-more-bad-files-than-max-bad-fraction"),
    pytest.param(Case(REINDEX, ("{d}/empty: no documents matching", "add files or change corpus.include"),
                      files={"empty/notes.csv": "a,b\n"}, env={"REASONLOOP_CORPUS__PATH": "{d}/empty"}),
                 id="corpus-empty-folder"),
    pytest.param(Case(REINDEX, ("{d}/nowhere: corpus folder not found", "corpus.path"),
                      env={"REASONLOOP_CORPUS__PATH": "{d}/nowhere"}),
                 id="corpus-folder-missing"),
    pytest.param(Case(REINDEX, ("{d}/quality.jsonl:2: Field required (field 'reference')",),
                      files={"quality.jsonl": jsonl(TINY_QUESTIONS[0], {"id": "q", "question": "Who?"})},
                      env={"REASONLOOP_QUALITY": json.dumps({"datasets": {"squad_sample": {"questions":
                                                                                           "{d}/quality.jsonl"}}})}),
                 id="quality-set-missing-reference"),

    # question sets (eval): refused whole, before anything is retrieved or asked
    pytest.param(Case(EVAL, ("{d}/questions.jsonl: the question set is empty",), files={"questions.jsonl": ""}),
                 id="questions-empty-file"),
    pytest.param(Case(EVAL, ("{d}/missing.jsonl: question set not found", "questions.path"),
                      env={"REASONLOOP_QUESTIONS__PATH": "{d}/missing.jsonl"}),
                 id="questions-file-missing"),
    pytest.param(Case(EVAL, ("{d}/questions.jsonl:2: Field required (field 'question')",),
                      files={"questions.jsonl": jsonl(TINY_QUESTIONS[0], {"id": "q2", "reference": "r"})}),
                 id="questions-missing-question"),
    pytest.param(Case(EVAL, ("{d}/questions.jsonl:1: String should have at least 1 character (field 'question')",),
                      files={"questions.jsonl": jsonl({**TINY_QUESTIONS[0], "question": "   "})}),
                 id="questions-blank-question"),
    pytest.param(Case(EVAL, ("{d}/questions.jsonl:1: Input should be a valid list (field 'gold_doc_ids')",),
                      files={"questions.jsonl": jsonl({**TINY_QUESTIONS[0], "gold_doc_ids": "Super_Bowl_50#0"})}),
                 id="questions-gold-doc-ids-wrong-type"),
    pytest.param(Case(EVAL, ("{d}/questions.jsonl:1: Input should be a valid string (field 'id')",),
                      files={"questions.jsonl": jsonl({**TINY_QUESTIONS[0], "id": 17})}),
                 id="questions-id-wrong-type"),
    pytest.param(Case(EVAL, ("{d}/questions.jsonl:2: malformed JSON (Expecting property name enclosed in double "
                             "quotes at column 2)",),
                      files={"questions.jsonl": jsonl(TINY_QUESTIONS[0], "{bad json")}),
                 id="questions-bad-json-line"),
    pytest.param(Case(EVAL, ("{d}/questions.jsonl:2: not valid UTF-8 at byte", "convert the file to UTF-8"),
                      files={"questions.jsonl": jsonl(TINY_QUESTIONS[0]).encode() + b'{"id": "q\xe9"}\n'}),
                 id="questions-non-utf8"),
    pytest.param(Case(EVAL, (f"{{d}}/questions.jsonl:2: duplicate id '{TINY_QUESTIONS[0]['id']}' (first on line 1) "
                             "(field 'id')",),
                      files={"questions.jsonl": jsonl(TINY_QUESTIONS[0], TINY_QUESTIONS[0])}),
                 id="questions-duplicate-id"),
    pytest.param(Case(EVAL, ("{d}/questions.jsonl:1: Extra inputs are not permitted (field 'difficulty')",),
                      files={"questions.jsonl": jsonl({**TINY_QUESTIONS[0], "difficulty": "hard"})}),
                 id="questions-unknown-extra-key"),

    # feedback (build-dpo; the state has an MLflow store, so run ids are checked against it)
    pytest.param(Case(BUILD_DPO, ("1 of 1 inputs are bad", "no dataset was built",
                                  "a.jsonl:1: field 'rating': Value error, rating must be 'up', 'down' or an integer "
                                  "from 1 to 5, got 9"),
                      files={"feedback/a.jsonl": jsonl(feedback(rating=9))}, state="existing"),
                 id="feedback-bad-rating"),
    pytest.param(Case(BUILD_DPO, ("a.csv:2: field 'rating'", "got 'sideways'"),
                      files={"feedback/a.csv": "question_id,question,answer,rating,timestamp\n"
                                               "q1,Who won?,Denver,sideways,2025-11-22T10:00:00Z\n"},
                      state="existing"),
                 id="feedback-csv-bad-rating"),
    pytest.param(Case(BUILD_DPO, ("a.jsonl:1: field 'question': Field required; field 'answer': Field required; "
                                  "field 'timestamp': Field required",),
                      files={"feedback/a.jsonl": jsonl({"question_id": "q1", "rating": "up"})}, state="existing"),
                 id="feedback-missing-fields"),
    pytest.param(Case(BUILD_DPO, ("a.jsonl:1: field 'answer': not valid UTF-8 (byte 0xe9): re-save the file as UTF-8",),
                      files={"feedback/a.jsonl": feedback(answer="@@").encode().replace(b"@@", b"caf\xe9") + b"\n"},
                      state="existing"),
                 id="feedback-bad-encoding"),
    pytest.param(Case(BUILD_DPO, (f"a.jsonl:1: field 'source_run_id': unknown run id '{UNKNOWN_RUN}'",),
                      files={"feedback/a.jsonl": jsonl(feedback(source_run_id=UNKNOWN_RUN))}, state="existing"),
                 id="feedback-unknown-run-id"),
    pytest.param(Case(BUILD_DPO, ("3 of 6 inputs are bad (50.0%, over preferences.max_bad_fraction = 20.0%); no "
                                  "dataset was built", "a.jsonl:4: field 'rating'", "a.jsonl:5: malformed JSON",
                                  "a.jsonl:6: field 'timestamp'"),
                      files={"feedback/a.jsonl": jsonl(feedback(), feedback(rating="down", answer="Carolina"),
                                                       feedback(rating=4), feedback(rating=0), "{oops",
                                                       feedback(timestamp="yesterday"))},
                      state="existing"),
                 id="feedback-too-many-bad-rows"),
    pytest.param(Case(BUILD_DPO, ("{d}/nowhere: feedback folder not found",),
                      env={"REASONLOOP_PREFERENCES__FEEDBACK_DIR": "{d}/nowhere"}, state="existing"),
                 id="feedback-folder-missing"),
    pytest.param(Case(BUILD_DPO, ("{d}/feedback", "no feedback"), files={"feedback/README.txt": "nothing yet"},
                      state="existing"),
                 id="feedback-folder-empty"),
    pytest.param(Case((*FEEDBACK_ADD, "--rating", "7"), ("--rating: Value error, rating must be 'up', 'down' or an "
                                                         "integer from 1 to 5, got '7'",), code=2),
                 id="feedback-add-bad-rating"),
    pytest.param(Case(("feedback", "add", "--question-id", "q1", "--question", "Who won?", "--answer", " ",
                       "--rating", "up"), ("--answer: String should have at least 1 character",), code=2),
                 id="feedback-add-blank-answer"),
    pytest.param(Case((*FEEDBACK_ADD, "--rating", "up", "--run", UNKNOWN_RUN),
                      (f"--run {UNKNOWN_RUN}: no nightly-eval or canary run has this id",), code=2, state="existing"),
                 id="feedback-add-unknown-run"),

    # configuration: exit 2 before anything runs (not even the state folder is created)
    pytest.param(Case(("--profile", "typo", *REINDEX), ("retrieval.top_kk: Extra inputs are not permitted",), code=2,
                      env=ROOT_ENV, state="none",
                      prepare=root_copy(**{"configs/profiles/typo.yaml": "retrieval:\n  top_kk: 3\n"})),
                 id="config-profile-unknown-key"),
    pytest.param(Case(("--profile", "broken", *REINDEX), ("configs/profiles/broken.yaml: not valid YAML",), code=2,
                      env=ROOT_ENV, state="none",
                      prepare=root_copy(**{"configs/profiles/broken.yaml": "llm: [provider: openai\n"})),
                 id="config-profile-invalid-yaml"),
    pytest.param(Case(("--profile", "listed", *REINDEX), ("configs/profiles/listed.yaml: the top level must be a "
                                                          "mapping of sections, got list",), code=2,
                      env=ROOT_ENV, state="none",
                      prepare=root_copy(**{"configs/profiles/listed.yaml": "- llm\n- judge\n"})),
                 id="config-profile-not-a-mapping"),
    pytest.param(Case(REINDEX, ("configs/default.yaml: not valid YAML",), code=2, env=ROOT_ENV, state="none",
                      prepare=root_copy(**{"configs/default.yaml": "corpus:\n  path: [data\n"})),
                 id="config-default-yaml-invalid"),
    pytest.param(Case(("--profile", "nope", *REINDEX), ("profile 'nope' not found", "profiles/nope.yaml",
                                                        "known profiles: ['local-servers', 'openai']"), code=2,
                      state="none"),
                 id="config-unknown-profile"),
    pytest.param(Case(EVAL, ("profile 'nope' not found",), code=2, env={"REASONLOOP_PROFILE": "nope"}, state="none"),
                 id="config-unknown-profile-via-env"),
    pytest.param(Case(("--profile", "../../outside", "config", "show"), ("profile '../../outside'",), code=2,
                      env=ROOT_ENV, state="none",
                      prepare=root_copy(**{"outside.yaml": "llm:\n  model: from-outside\n"})),
                 id="config-profile-name-path-traversal"),
    pytest.param(Case(REINDEX, ("retrieval.top_k: Input should be a valid integer", "(got 'many')"), code=2,
                      env={"REASONLOOP_RETRIEVAL__TOP_K": "many"}, state="none"),
                 id="config-env-wrong-type"),
    pytest.param(Case(REINDEX, ("retrieval.topk: Extra inputs are not permitted",), code=2,
                      env={"REASONLOOP_RETRIEVAL__TOPK": "8"}, state="none"),
                 id="config-env-unknown-key"),
    pytest.param(Case(REINDEX, ("quality.datasets.extra.floors.recall_at_3", "Input should be 'recall_at_1'"),
                      code=2, env={"REASONLOOP_QUALITY": json.dumps({"datasets": {"extra": {
                          "questions": "q.jsonl", "floors": {"recall_at_3": 0.5}}}})}, state="none"),
                 id="config-env-section-unknown-metric"),
    pytest.param(Case(REINDEX, ("REASONLOOP_QUALITY",), code=2, env={"REASONLOOP_QUALITY": "{not json"},
                      state="none"),
                 id="config-env-section-not-json"),
    pytest.param(Case(REINDEX, ("deployments.nightly_eval.cron: String should match pattern", "(got 'every night')"),
                      code=2, env={"REASONLOOP_DEPLOYMENTS__NIGHTLY_EVAL__CRON": "every night"}, state="none"),
                 id="config-bad-cron"),
    pytest.param(Case(REINDEX, ("deployments.nightly_eval.cron: String should match pattern",), code=2,
                      env={**ROOT_ENV, "REASONLOOP_PROFILE": "cron4"}, state="none",
                      prepare=root_copy(**{"configs/profiles/cron4.yaml":
                                           "deployments:\n  nightly_eval:\n    cron: '0 2 * *'\n"})),
                 id="config-bad-cron-in-profile"),
    pytest.param(Case(REINDEX, ("timezone: unknown time zone 'Mars/Olympus' (use an IANA name such as Europe/Berlin)",),
                      code=2, env={"REASONLOOP_DEPLOYMENTS__TIMEZONE": "Mars/Olympus"}, state="none"),
                 id="config-unknown-time-zone"),
    pytest.param(Case(REINDEX, ("build_dpo.timezone: unknown time zone 'Nowhere'",), code=2,
                      env={"REASONLOOP_DEPLOYMENTS__BUILD_DPO__TIMEZONE": "Nowhere"}, state="none"),
                 id="config-unknown-time-zone-of-a-schedule"),
    pytest.param(Case(REINDEX, ("{d}/state/production.yaml: not valid YAML",), code=2, state="existing",
                      prepare=write_into_state("production.yaml", "llm: {model: [\n")),
                 id="config-production-pointer-corrupt"),

    # prompt templates (eval over the template index, prompts.dir pointed at an edited copy)
    pytest.param(Case(EVAL, ("{d}/prompts/chain_of_thought.yaml: template: Value error, placeholders ['audience', "
                             "'context', 'question'] differ from input_variables ['context', 'question']",),
                      env=PROMPTS_DIR, state="existing", files={"questions.jsonl": jsonl(*TINY_QUESTIONS)},
                      prepare=prompts_copy(edit_template("chain_of_thought", "<question>",
                                                         "{{ audience }} <question>"))),
                 id="prompt-undeclared-variable"),
    pytest.param(Case(EVAL, ("{d}/prompts/chain_of_thought.yaml: the text of chain_of_thought@v1 changed",
                             "locked 57f62288bb87 in VERSIONS.lock", "bump `version`"),
                      env=PROMPTS_DIR, state="existing",
                      prepare=prompts_copy(edit_template("chain_of_thought", "answer concisely",
                                                         "answer very concisely"))),
                 id="prompt-text-changed-without-version-bump"),
    pytest.param(Case(EVAL, ("prompt 'chain_of_thot' not found: no {d}/prompts/chain_of_thot.yaml",
                             "known prompts: ['chain_of_thought'"),
                      env={**PROMPTS_DIR, "REASONLOOP_PROMPTS__REASONING": "chain_of_thot"}, state="existing",
                      prepare=prompts_copy()),
                 id="prompt-missing-template-file"),
    pytest.param(Case(EVAL, ("{d}/prompts/verify_answer.yaml: not valid YAML",), env=PROMPTS_DIR, state="existing",
                      prepare=prompts_copy(edit_template("verify_answer", "name: verify_answer",
                                                         "name: [verify_answer"))),
                 id="prompt-template-invalid-yaml"),
    pytest.param(Case(EVAL, ("{d}/prompts/direct_answer.yaml: template: Field required",), env=PROMPTS_DIR,
                      state="existing", prepare=prompts_copy(edit_template("direct_answer", "template:", "templat:"))),
                 id="prompt-template-missing-field"),
    pytest.param(Case(EVAL, ("prompt '../outside' is not a template name",),
                      env={**PROMPTS_DIR, "REASONLOOP_PROMPTS__REASONING": "../outside"}, state="existing",
                      prepare=prompts_copy(outside_template)),
                 id="prompt-name-path-traversal"),
    pytest.param(Case(("prompt", "register"), ("{d}/prompts/verify_answer.yaml: template: Value error, placeholders",),
                      env=PROMPTS_DIR, state="existing",
                      prepare=prompts_copy(edit_template("verify_answer", "<question>", "{{ audience }} <question>"))),
                 id="prompt-register-one-bad-template"),

    # CLI arguments
    pytest.param(Case(("review", "export", "{d}/out.txt"), ("{d}/out.txt: use a .jsonl or .csv file name",), code=2,
                      state="existing"),
                 id="cli-review-export-bad-suffix"),
    pytest.param(Case(("trigger", "nightly"), ("no deployment 'nightly': choose one of", "eval", "build-dpo"), code=2,
                      env={"PREFECT_API_URL": "http://127.0.0.1:9/api"}),  # never contacted: the name is checked first
                 id="cli-trigger-unknown-deployment"),
    pytest.param(Case(("trigger", "nightly"), ("no deployment 'nightly'",), code=2),
                 id="cli-trigger-unknown-deployment-without-server"),
    pytest.param(Case(("index", "rollback", "--to", "99"), ("cannot roll back to 99: kept versions are [1] "
                                                            "(current 1)",), state="existing"),
                 id="cli-index-rollback-to-unknown-version"),
    pytest.param(Case(("index", "rollback", "--to", "99"), ("there is no index 'reasonloop' to roll back",)),
                 id="cli-index-rollback-without-index"),
    pytest.param(Case(("baseline", "set", "not-a-run"), ("no run not-a-run in sqlite:///{d}/state/mlflow.db",
                                                         "`reasonloop runs`"), state="existing"),
                 id="cli-baseline-set-unknown-run"),
    pytest.param(Case(("baseline", "set", "not-a-run"), ("no run not-a-run",)),
                 id="cli-baseline-set-unknown-run-fresh-store"),
    pytest.param(Case(("runs", "--limit", "0"), ("Invalid value for '--limit'", "greater than or equal to 1"), code=2),
                 id="cli-runs-limit-zero"),
    pytest.param(Case(("canary", "run", "--candidate", "gpt 4; rm -rf /"),
                      ("candidate 'gpt 4; rm -rf /': give a model name",)),
                 id="cli-canary-candidate-malformed"),
    pytest.param(Case(("canary", "run", "--candidate", "nonexistent@v2"),
                      ("candidate nonexistent@v2: no llm prompt role uses 'nonexistent'",)),
                 id="cli-canary-candidate-prompt-no-role-uses"),
    pytest.param(Case(("canary", "run", "--candidate", "chain_of_thought@v99"),
                      ("prompt chain_of_thought: no registered v99",), state="existing"),
                 id="cli-canary-candidate-prompt-version-unknown"),
    pytest.param(Case(("canary", "run", "--candidate", "chain_of_thought@v1", "--slice", "2"),
                      ("what production already runs",), state="existing",
                      env={"REASONLOOP_SAFETY__ENABLED": "false"}),  # what it writes, as fast as it gets there
                 id="cli-canary-candidate-is-production"),
    pytest.param(Case(("prompt", "alias", "chain_of_thought", "production", "99"),
                      ("prompt chain_of_thought: no registered v99 (registered: none)", "reasonloop prompt register"),
                      state="existing"),
                 id="cli-prompt-alias-unknown-version"),
    pytest.param(Case(("prompt", "alias", "chain_of_thought", "production", "0"),
                      ("Invalid value for 'version'", "greater than or equal to 1"), code=2),
                 id="cli-prompt-alias-version-zero"),
    pytest.param(Case(("judge", "calibrate", "--data", "{d}/pairs.jsonl"),
                      ("{d}/pairs.jsonl:1: Input should be 0 or 1 (field 'label')",),
                      files={"pairs.jsonl": jsonl({"id": "p1", "doc": "The sky is blue.", "summary": "Blue sky.",
                                                   "label": 2})}),
                 id="cli-judge-calibrate-bad-label"),
    pytest.param(Case(("judge", "calibrate", "--data", "{d}/none.jsonl"), ("{d}/none.jsonl: labeled pair set not "
                                                                           "found",)),
                 id="cli-judge-calibrate-missing-data"),
]


@pytest.mark.parametrize("case", CASES)
def test_a_bad_input_is_refused_naming_the_place_and_writes_nothing(
        case: Case, tmp_path: Path, tiny_data: tuple[Path, Path], request: pytest.FixtureRequest) -> None:
    d = str(tmp_path)
    state = tmp_path / "state"
    if case.state == "existing":
        shutil.copytree(request.getfixturevalue("template_state"), state)
    for rel, content in case.files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    if case.prepare:
        case.prepare(tmp_path)
    before = snapshot(tmp_path)
    env = default_env(tmp_path) | {key: value.replace("{d}", d) for key, value in case.env.items()}

    result = invoke([arg.replace("{d}", d) for arg in case.args], env)

    message = error_text(result)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == case.code, result.output
    for fragment in case.expect:
        assert fragment.replace("{d}", d) in message, message
    assert "Traceback" not in message
    after = snapshot(tmp_path)
    if case.state == "existing":
        assert changes(before, after) == {}
    else:
        outside = {k: v for k, v in after.items() if not k.startswith("state/")}
        assert changes(before, outside) == {}
        if case.state == "none":
            assert not state.exists(), "the settings were refused, yet the state folder was created"
        else:
            assert left_in_fresh_state(state) == []


# --- ids: data, not paths; and a corpus too small to verify --------------------------------------------------------


def test_ids_that_look_like_paths_stay_data(template_state: Path, tmp_path: Path) -> None:
    """Document and question ids only ever become Chroma ids, JSON keys and table cells (no file is named after
    one), so '../../etc/passwd' is accepted verbatim rather than refused: ids such as 'AC/DC' are real."""
    from reasonloop.retrieval.catalog import Catalog
    from reasonloop.retrieval.record_sets import load_questions

    catalog = Catalog.open(template_state / "index" / "reasonloop" / "catalogs" / "v0001.sqlite")
    assert catalog is not None
    entry = catalog.documents([TRAVERSAL_ID])[TRAVERSAL_ID]
    assert entry.chunk_ids and all(c.startswith(f"{TRAVERSAL_ID}::") for c in entry.chunk_ids)
    names = {p.name for p in template_state.parent.rglob("*")}
    assert not names & {"passwd", "etc"}, "an id became a path"
    questions = write_jsonl(tmp_path / "q.jsonl", [{**TINY_QUESTIONS[0], "id": "../../etc/shadow"}])
    assert [q.id for q in load_questions(questions)] == ["../../etc/shadow"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.jsonl"]


def test_a_one_document_corpus_is_indexed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks.index import stage_files

    monkeypatch.setattr(stage_files, "retries", 0)  # one attempt: the retries only repeat the crash
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "one.txt").write_text(TINY[0]["text"][:400], encoding="utf-8")
    floors = {"recall_at_5": 0.0, "mrr_at_10": 0.0}  # its one paragraph is no question's gold document
    env = default_env(tmp_path) | {"REASONLOOP_QUALITY": json.dumps({"datasets": {"squad_sample": {
        "questions": str(tmp_path / "questions.jsonl"), "floors": floors}}})}
    write_jsonl(tmp_path / "questions.jsonl", TINY_QUESTIONS)
    result = invoke(["reindex"], env)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 0, result.output
