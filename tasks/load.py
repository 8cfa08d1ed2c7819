"""Reading inputs: corpus documents (any supported source; bad ones become rejects) and question sets (strict)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from pydantic import ValidationError

from reasonloop.errors import EmptyInputError, InputError
from reasonloop.schemas import Document, LoadedCorpus, Question, Reject
from reasonloop.settings import CorpusConfig, QualityConfig
from reasonloop.sources import SourceProblem, iter_records, read_file


def _pydantic_problem(exc: ValidationError) -> tuple[str, str]:
    first = exc.errors()[0]
    return first["msg"], ".".join(str(p) for p in first["loc"])


@task(name="load-documents")
def load_documents(root: Path, cfg: CorpusConfig) -> LoadedCorpus:
    """Every matching file under `root` in sorted path order (reproducible ids and runs); unusable files and
    records are returned as rejects, not raised."""
    if not root.is_dir():
        raise InputError("corpus folder not found: create it or set corpus.path in configs/default.yaml",
                         path=root)
    files = sorted({p for pattern in cfg.include for p in root.rglob(pattern) if p.is_file()})
    documents: list[Document] = []
    rejects: list[Reject] = []
    for path in files:
        for item in read_file(path, root, cfg):
            (rejects if isinstance(item, Reject) else documents).append(item)  # type: ignore[arg-type]
    if not documents and not rejects:
        raise EmptyInputError(f"no documents matching {cfg.include}: add files or change corpus.include", path=root)
    return LoadedCorpus(documents=documents, rejects=rejects)


@task(name="load-questions")
def load_questions(path: Path) -> list[Question]:
    """A question set (.jsonl: id, question, reference, optional gold_doc_ids), all or nothing: the first bad
    line is an error naming it, because a silently shortened question set would skew every metric."""
    if not path.is_file():
        raise InputError("question set not found: set questions.path in configs/default.yaml", path=path)
    questions: list[Question] = []
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
            question = Question.model_validate(record)
        except ValidationError as exc:
            msg, loc = _pydantic_problem(exc)
            raise InputError(msg, path=path, line=number, field=loc) from None
        if question.id in seen:
            raise InputError(f"duplicate id '{question.id}' (first on line {seen[question.id]})", path=path,
                             line=number, field="id")
        seen[question.id] = number
        questions.append(question)
    if not questions:
        raise EmptyInputError("the question set is empty: add at least one question", path=path)
    return questions


@task(name="load-quality-sets")
def load_quality_sets(cfg: QualityConfig) -> dict[str, list[Question]]:
    """The labeled question sets that every new index version is measured on."""
    return {name: load_questions.fn(dataset.questions) for name, dataset in cfg.datasets.items()}
