"""Strict record sets: question sets and human-labeled pairs, read all or nothing (a silently shortened set would
skew every metric)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from reasonloop.errors import EmptyInputError, InputError
from reasonloop.retrieval.sources import SourceProblem, iter_records
from reasonloop.schemas import LabeledPair, NonEmptyStr, Question

R = TypeVar("R", bound=BaseModel)

def _pydantic_problem(exc: ValidationError) -> tuple[str, str]:
    first = exc.errors()[0]
    return first["msg"], ".".join(str(p) for p in first["loc"])


def load_records(path: Path, model: type[R], what: str, setting: str,
                 defaults: dict[str, Any] | None = None) -> list[R]:
    """A strict record file (.jsonl, or .json holding a list), all or nothing: the first bad line is an error naming
    the file, line and field, because a silently shortened set would skew every metric. Ids are unique."""
    if not path.is_file():
        raise InputError(f"{what} not found: set {setting} in configs/default.yaml", path=path)
    loaded: list[R] = []
    seen: dict[str, int] = {}
    try:
        records = list(iter_records(path, path.read_bytes()))
    except SourceProblem as problem:
        raise InputError(problem.reason, path=path, line=problem.line) from None
    for number, record in records:
        if isinstance(record, SourceProblem):
            raise InputError(record.reason, path=path, line=number)
        if not isinstance(record, dict):
            raise InputError(f"expected a JSON object, got {type(record).__name__}", path=path, line=number)
        try:
            item = model.model_validate({**(defaults or {}), **record})
        except ValidationError as exc:
            msg, loc = _pydantic_problem(exc)
            raise InputError(msg, path=path, line=number, field=loc) from None
        key = str(item.id)
        if key in seen:
            raise InputError(f"duplicate id '{key}' (first on line {seen[key]})", path=path, line=number, field="id")
        seen[key] = number
        loaded.append(item)
    if not loaded:
        raise EmptyInputError(f"the {what} is empty: add at least one record", path=path)
    return loaded


class SavedQuestion(Question):
    """A question of a saved set: its reference answer is required (a live question has none)."""

    reference: NonEmptyStr


def load_questions(path: Path) -> list[Question]:
    """A question set (.jsonl: id, question, reference, optional gold_doc_ids)."""
    return load_records(path, SavedQuestion, "question set", "questions.path")


def load_labeled_pairs(paths: list[Path]) -> list[LabeledPair]:
    """Human-labeled (document, summary) pairs for judge calibration: SummEdits files as published (their extra
    fields are ignored; the domain is the file's name unless a record says otherwise) or our JSONL slice."""
    return [pair for path in paths for pair in
            load_records(path, LabeledPair, "labeled pair set", "judge calibration's --data",
                         {"domain": path.stem.removeprefix("summedits_")})]
