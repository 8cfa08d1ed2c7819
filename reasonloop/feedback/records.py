"""User feedback on answers: the record, a quarantining loader for a folder of .jsonl/.csv files, and an appender.

Every row of every file either becomes a `FeedbackRecord` or a `Reject` naming its file, line and field; nothing
is dropped silently. Bytes that are not UTF-8 spoil only their own row (the field is named), never the whole file.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from reasonloop.errors import InputError
from reasonloop.schemas import LiveRecord, NonEmptyStr, Record, Reject

FEEDBACK_PATTERNS = ("*.jsonl", "*.csv")
CLI_FILE = "cli.jsonl"
OPTIONAL_FIELDS = ("corrected_answer", "comment", "segment", "source_run_id", "source_trace_id")
Polarity = Literal["positive", "negative", "neutral"]


class FeedbackRecord(Record):
    """One person's judgement of one answer: thumbs ("up"/"down") or a 1-5 rating, optionally a better answer."""

    question_id: NonEmptyStr
    question: NonEmptyStr
    answer: NonEmptyStr
    rating: Literal["up", "down"] | int = Field(description="'up' | 'down', or an integer from 1 (bad) to 5 (good)")
    corrected_answer: NonEmptyStr | None = Field(default=None, description="what the answer should have been")
    comment: str | None = None
    segment: str | None = Field(default=None, description="a user group or product area, for per-segment counts")
    timestamp: datetime = Field(description="when it was given; naive times are taken as UTC")
    source_run_id: NonEmptyStr | None = Field(default=None, description="the MLflow run that produced the answer")
    source_trace_id: NonEmptyStr | None = Field(default=None, description="the MLflow trace of the served request "
                                                "that produced the answer (feedback given through the endpoint)")

    @field_validator("rating", mode="before")
    @classmethod
    def _check_rating(cls, value: Any) -> Any:
        problem = f"rating must be 'up', 'down' or an integer from 1 to 5, got {value!r}"
        if isinstance(value, bool):
            raise ValueError(problem)
        if isinstance(value, str):
            text = value.strip().lower()
            if text in ("up", "down"):
                return text
            if not text.isdigit():
                raise ValueError(problem)
            value = int(text)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or not 1 <= value <= 5:
            raise ValueError(problem)
        return value

    @field_validator("timestamp")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @property
    def score(self) -> float:
        """The rating on one scale: up = +1, down = -1, 1..5 -> -1, -0.5, 0, +0.5, +1."""
        if self.rating == "up":
            return 1.0
        if self.rating == "down":
            return -1.0
        return (int(self.rating) - 3) / 2

    @property
    def polarity(self) -> Polarity:
        """positive: up or >= 4; negative: down or <= 2; neutral: 3."""
        return "positive" if self.score > 0 else "negative" if self.score < 0 else "neutral"


class FeedbackLoad(Record):
    """What a feedback folder held: the valid records (with where each came from) and the quarantined rows."""

    records: list[FeedbackRecord] = Field(default_factory=list)
    origins: list[str] = Field(default_factory=list, description="'file:line' of each record, in the same order")
    rejects: list[Reject] = Field(default_factory=list)

    @model_validator(mode="after")
    def _aligned(self) -> FeedbackLoad:
        if len(self.records) != len(self.origins):
            raise ValueError(f"{len(self.records)} records but {len(self.origins)} origins")
        return self


def load_feedback(folder: Path, known_run_ids: set[str] | None = None) -> FeedbackLoad:
    """Every `*.jsonl` and `*.csv` file directly in `folder`, in name order. A bad row (malformed JSON, bytes that
    are not UTF-8, a missing or invalid field, an empty answer, a `source_run_id` outside `known_run_ids` when
    that is given) becomes a Reject naming file:line and field; the good rows load."""
    if not folder.is_dir():
        raise InputError("feedback folder not found: create it or point the feedback path at it", path=folder)
    files = sorted({p for pattern in FEEDBACK_PATTERNS for p in folder.glob(pattern) if p.is_file()})
    records: list[FeedbackRecord] = []
    origins: list[str] = []
    rejects: list[Reject] = []
    for path in files:
        name = path.relative_to(folder).as_posix()
        rows = _csv_rows(path.read_bytes()) if path.suffix == ".csv" else _jsonl_rows(path.read_bytes())
        for line, row in rows:
            try:
                record = _validate(row, known_run_ids)
            except _RowProblem as problem:
                rejects.append(Reject(source=name, line=line, reason=str(problem)))
                continue
            records.append(record)
            origins.append(f"{name}:{line}")
    return FeedbackLoad(records=records, origins=origins, rejects=rejects)


def feedback_from_traces(records_of: list[LiveRecord]) -> FeedbackLoad:
    """The ratings and corrections users gave on served answers (their traces' assessments), validated like a feedback
    file's rows: a bad one becomes a Reject naming the trace and the field. Traces without feedback add nothing."""
    records: list[FeedbackRecord] = []
    origins: list[str] = []
    rejects: list[Reject] = []
    for live in records_of:
        if live.rating is None and live.correction is None:
            continue
        rating = "up" if live.rating else "down" if live.rating is not None else 3  # a correction alone: neutral
        row = {"question_id": live.result.question.id, "question": live.result.question.question,
               "answer": live.result.answer.answer, "rating": rating, "corrected_answer": live.correction,
               "comment": live.comment, "segment": live.arm,
               "timestamp": datetime.fromtimestamp(live.timestamp_ms / 1000, UTC).isoformat(),
               "source_trace_id": live.mlflow_trace_id}
        origin = f"trace {live.mlflow_trace_id}"
        try:
            records.append(_validate({k: v for k, v in row.items() if v is not None}, None))
        except _RowProblem as problem:
            rejects.append(Reject(source=origin, reason=str(problem)))
            continue
        origins.append(origin)
    return FeedbackLoad(records=records, origins=origins, rejects=rejects)


def merge_loads(*loads: FeedbackLoad) -> FeedbackLoad:
    return FeedbackLoad(records=[r for load in loads for r in load.records],
                        origins=[o for load in loads for o in load.origins],
                        rejects=[r for load in loads for r in load.rejects])


def append_feedback(folder: Path, record: FeedbackRecord) -> Path:
    """Append one validated record to `folder/cli.jsonl` as a single write under an exclusive lock, then fsync.
    A torn last line left by a crash is closed first, so it stays one quarantined row and spoils nothing else."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CLI_FILE
    line = (record.model_dump_json(exclude_none=True) + "\n").encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        written = 0
        while written < len(line):
            written += os.write(fd, line[written:])
        os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the lock
    return path


class _RowProblem(Exception):
    """Why one row was refused (the message names the field when there is one)."""


def reject_at(origin: str, reason: str) -> Reject:
    source, _, line = origin.rpartition(":")
    return Reject(source=source, line=int(line), reason=reason)


def _jsonl_rows(data: bytes) -> Iterator[tuple[int, dict[str, Any] | _RowProblem]]:
    for number, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.removeprefix(b"\xef\xbb\xbf") if number == 1 else raw
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        text = raw.decode("utf-8", errors="surrogateescape")
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            yield number, _RowProblem(_undecodable(raw) or f"malformed JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(value, dict):
            yield number, _RowProblem(f"expected a JSON object, got {type(value).__name__}")
            continue
        yield number, value


def _csv_rows(data: bytes) -> Iterator[tuple[int, dict[str, Any] | _RowProblem]]:
    text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8", errors="surrogateescape")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames or []
    except csv.Error as exc:
        yield 1, _RowProblem(f"unreadable CSV header ({exc})")
        return
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, _RowProblem(f"unreadable CSV row ({exc})")
            return
        if None in row:
            yield start, _RowProblem(f"{len(header) + len(row[None])} values but the header has {len(header)} columns")
        elif not any((value or "").strip() for value in row.values()):
            pass  # a blank line
        else:  # an empty cell of an optional column means "not given"
            yield start, {k: v for k, v in row.items() if v is not None and not (k in OPTIONAL_FIELDS and v == "")}
        start = reader.line_num + 1


def _undecodable(raw: bytes) -> str | None:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start} of the line): "
                "re-save the file as UTF-8")
    return None


def _validate(row: dict[str, Any] | _RowProblem, known_run_ids: set[str] | None) -> FeedbackRecord:
    if isinstance(row, _RowProblem):
        raise row
    for field, value in row.items():
        if isinstance(value, str) and any("\udc80" <= ch <= "\udcff" for ch in value):
            bad = next(ch for ch in value if "\udc80" <= ch <= "\udcff")
            raise _RowProblem(f"field '{field}': not valid UTF-8 (byte 0x{ord(bad) - 0xdc00:02x}): "
                              "re-save the file as UTF-8")
    try:
        record = FeedbackRecord.model_validate(row)
    except ValidationError as exc:
        raise _RowProblem("; ".join(f"field '{'.'.join(map(str, e['loc'][:1]))}': {e['msg']}"
                                    for e in exc.errors())) from None
    if known_run_ids is not None and record.source_run_id is not None and record.source_run_id not in known_run_ids:
        raise _RowProblem(f"field 'source_run_id': unknown run id '{record.source_run_id}' "
                          "(not a run of this tracking store)")
    return record
