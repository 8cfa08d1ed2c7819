"""Corpus sources: each supported file type becomes Documents; anything unusable becomes a Reject.

Readers never raise for bad content: a bad file or record is reported (file, line, reason) so the reindex
can quarantine it and go on, and decide from the bad fraction whether to fail.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reasonloop.errors import EmptyInputError, InputError
from reasonloop.retrieval.config import CorpusConfig
from reasonloop.schemas import Document, MetadataValue, Reject, content_hash

TEXT_TYPES = {".md", ".txt", ".html", ".htm"}
RECORD_TYPES = {".json", ".jsonl"}
SUPPORTED_TYPES = TEXT_TYPES | RECORD_TYPES | {".pdf"}
BEIR_CORPUS = "corpus.jsonl"  # BEIR layout: {"_id", "title", "text", "metadata"} per line


class SourceProblem(Exception):
    """What is wrong with a file or record, and on which line when known."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.line = reason, line


def decode_utf8(data: bytes, *, by_line: bool = False) -> str:
    """The text of a file; with `by_line` (record files), a decoding error also names the line it is on."""
    if b"\x00" in data[:8192]:
        raise SourceProblem("binary content (NUL bytes): not a text file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1 if by_line else None
        raise SourceProblem(f"not valid UTF-8 at byte {exc.start}; convert the file to UTF-8", line) from None


class _TextExtractor(HTMLParser):
    """Visible text of an HTML page (script/style/head dropped), block elements on their own lines."""

    SKIP = {"script", "style", "noscript", "template", "svg"}
    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "pre"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self.SKIP:
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self._skip:
            self._skip -= 1
        elif tag == "title":
            self._in_title = False
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skip:
            self.parts.append(data)


def html_to_text(markup: str) -> tuple[str, str]:
    """(title, text) of an HTML document."""
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    lines = (re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in "".join(parser.parts).splitlines())
    return parser.title.strip(), "\n".join(line for line in lines if line)


def pdf_to_text(path: Path) -> tuple[str, str]:
    """(title, text) of a PDF via pypdf; pages separated by blank lines."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        text = "\n\n".join((page.extract_text() or "").strip() for page in reader.pages)
        title = str((reader.metadata or {}).get("/Title") or "")
    except (PdfReadError, ValueError, KeyError, OSError) as exc:
        raise SourceProblem(f"unreadable PDF: {exc}") from None
    return title.strip(), text.strip()


def _markdown_title(text: str, fallback: str) -> str:
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return fallback


def _file_document(path: Path, rel: str, data: bytes) -> Document:
    if path.suffix == ".pdf":
        title, text = pdf_to_text(path)
    elif path.suffix in {".html", ".htm"}:
        title, text = html_to_text(decode_utf8(data))
    else:
        text = decode_utf8(data)
        title = _markdown_title(text, "") if path.suffix == ".md" else ""
    return Document(id=rel, text=text, title=title or path.stem, source=rel, content_hash=content_hash(text))


def iter_records(path: Path, data: bytes) -> Iterator[tuple[int | None, Any]]:
    """(line, record) pairs of a .jsonl file, or (None, record) for each item of a .json array/object."""
    text = decode_utf8(data, by_line=True)
    if path.suffix == ".json":
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SourceProblem(f"malformed JSON ({exc.msg})", exc.lineno) from None
        yield from ((None, item) for item in (value if isinstance(value, list) else [value]))
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, SourceProblem(f"malformed JSON ({exc.msg} at column {exc.colno})", number)


def _record_document(record: Any, rel: str, line: int | None, cfg: CorpusConfig, beir: bool) -> Document:
    if isinstance(record, SourceProblem):
        raise record
    if not isinstance(record, dict):
        raise SourceProblem(f"expected a JSON object, got {type(record).__name__}", line)
    fields = cfg.jsonl
    id_field, text_field, title_field = ("_id", "text", "title") if beir else \
        (fields.id_field, fields.text_field, fields.title_field)
    for name in (id_field, text_field):
        if name not in record:
            raise SourceProblem(f"missing required field '{name}'", line)
    text = record[text_field]
    if not isinstance(text, str):
        raise SourceProblem(f"field '{text_field}' must be a string, got {type(text).__name__}", line)
    raw_meta = record.get("metadata", {}) if beir else {k: record[k] for k in fields.metadata_fields if k in record}
    metadata: dict[str, MetadataValue] = {k: v for k, v in (raw_meta or {}).items()
                                          if isinstance(v, str | int | float | bool)}
    where = f"{rel}:{line}" if line is not None else rel
    return Document(id=str(record[id_field]), text=text, title=str(record.get(title_field) or ""), source=where,
                    metadata=metadata, content_hash=content_hash(text))


def record_line(source: str) -> int | None:
    """The line of a record's source (`file.jsonl:12`), None for a whole file."""
    tail = source.rsplit(":", 1)
    return int(tail[1]) if len(tail) == 2 and tail[1].isdigit() else None


def corpus_files(root: Path, include: list[str]) -> list[Path]:
    """The files under `root` matching any `corpus.include` pattern, in sorted path order (reproducible ids)."""
    return sorted({p for pattern in include for p in root.rglob(pattern) if p.is_file()})


def read_file(path: Path, root: Path, cfg: CorpusConfig, digest: Any = None) -> Iterator[Document | Reject]:
    """Documents of one corpus file; every problem comes out as a Reject instead of an exception. `digest` (a
    hashlib object) is fed the bytes read, so the catalog can recognise the file without reading it twice."""
    rel = path.relative_to(root).as_posix()
    try:
        if path.suffix not in SUPPORTED_TYPES:
            allowed = ", ".join(sorted(SUPPORTED_TYPES))
            raise SourceProblem(f"unsupported file type '{path.suffix}' (allowed: {allowed})")
        size = path.stat().st_size
        if size > cfg.max_file_bytes:
            raise SourceProblem(f"file is {size:,} bytes, over corpus.max_file_bytes ({cfg.max_file_bytes:,})")
        if size == 0:
            raise SourceProblem("empty file")
        data = path.read_bytes()
        if digest is not None:
            digest.update(data)
        if path.suffix not in RECORD_TYPES:
            yield _file_document(path, rel, data)
            return
        for line, record in iter_records(path, data):
            try:
                yield _record_document(record, rel, line, cfg, beir=path.name == BEIR_CORPUS)
            except SourceProblem as problem:
                yield Reject(source=rel, line=problem.line, reason=problem.reason)
            except ValidationError as exc:
                yield Reject(source=rel, line=line, reason=_first_error(exc))
    except SourceProblem as problem:
        yield Reject(source=rel, line=problem.line, reason=problem.reason)
    except ValidationError as exc:
        yield Reject(source=rel, line=None, reason=_first_error(exc))


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"field '{'.'.join(map(str, err['loc']))}': {err['msg']}"


def corpus_paths(root: Path, cfg: CorpusConfig) -> list[Path]:
    """The corpus files, or an error saying what to do when the folder is missing or holds none."""
    if not root.is_dir():
        raise InputError("corpus folder not found: create it or set corpus.path in configs/default.yaml",
                         path=root)
    paths = corpus_files(root, cfg.include)
    if not paths:
        raise EmptyInputError(f"no documents matching {cfg.include}: add files or change corpus.include", path=root)
    return paths
