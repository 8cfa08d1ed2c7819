"""Finding secrets in what a run leaves behind: files (SQLite databases value by value, Parquet row by row, gzip and
zip members unpacked), captured text and log records. A secret is looked for raw (case-insensitive) and in base64
(standard and URL-safe, at each of the three byte alignments it can have inside a longer encoded blob)."""

from __future__ import annotations

import base64
import gzip
import io
import json
import logging
import shutil
import sqlite3
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path


def base64_forms(secret: str) -> set[bytes]:
    """Substrings that any base64 encoding of a text containing `secret` must contain, whatever precedes it: for
    each offset mod 3, the encoding of the whole 3-byte groups that hold only the secret's bytes."""
    data, forms = secret.encode(), set()
    for offset in range(3):
        start = (3 - offset) % 3  # bytes of the secret that share a group with what precedes it
        body = data[start:]
        body = body[:len(body) - len(body) % 3]
        if len(body) >= 9:
            for encode in (base64.b64encode, base64.urlsafe_b64encode):
                forms.add(encode(body))
    return forms


@dataclass(frozen=True)
class Secret:
    name: str
    value: str
    parts: tuple[str, ...] = ()  # distinctive pieces that must not show up alone either (a random suffix)

    def needles(self) -> list[tuple[str, bytes, bool]]:
        """(form, bytes, case-sensitive) to look for."""
        found: list[tuple[str, bytes, bool]] = []
        for text in (self.value, *self.parts):
            found.append(("raw", text.lower().encode(), False))
            found += [("base64", form, True) for form in sorted(base64_forms(text))]
        return found


@dataclass
class Finding:
    secret: str
    form: str
    where: str


@dataclass
class Scan:
    secrets: list[Secret]
    files: int = 0
    bytes: int = 0
    texts: int = 0
    findings: list[Finding] = field(default_factory=list)

    def check(self, where: str, data: bytes) -> None:
        lowered = data.lower()
        for secret in self.secrets:
            for form, needle, exact in secret.needles():
                if needle in (data if exact else lowered):
                    self.findings.append(Finding(secret.name, form, where))
                    break

    def text(self, where: str, value: str) -> None:
        """Captured output or a log record, line by line (to say where), and whole with whitespace removed (a
        terminal may have wrapped a long line)."""
        self.texts += 1
        for n, line in enumerate(value.splitlines(), 1):
            self.check(f"{where} line {n}: {line.strip()[:160]}", line.encode("utf-8", "surrogateescape"))
        self.check(f"{where} (whitespace removed)", "".join(value.split()).encode("utf-8", "surrogateescape"))

    def tree(self, root: Path, label: str) -> None:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            self.file(path, f"{label}/{path.relative_to(root)}")

    def file(self, path: Path, where: str) -> None:
        try:
            data = path.read_bytes()
        except OSError:  # removed while we looked (a temporary file)
            return
        self.files += 1
        self.bytes += len(data)
        self.check(where, data)
        for inner, content in unpacked(path, data):
            self.check(f"{where} [{inner}]", content)

    def where(self, secret: str) -> list[str]:
        return sorted({f.where for f in self.findings if f.secret == secret})

    def report(self, secret: str) -> str:
        return "\n".join(f"  {f.form}: {f.where}" for f in self.findings if f.secret == secret)


def unpacked(path: Path, data: bytes) -> Iterator[tuple[str, bytes]]:
    """Contents a raw byte scan could miss: SQLite values (a long one spans overflow pages, each page starting with
    a pointer), Parquet values (compressed pages), gzip and zip members."""
    if data.startswith(b"SQLite format 3\x00"):
        yield from sqlite_values(path)
    elif data[:4] == b"PAR1":
        import pyarrow.parquet as pq

        yield "rows", json.dumps(pq.read_table(io.BytesIO(data)).to_pylist(), default=str).encode()
    elif data[:2] == b"\x1f\x8b":
        yield "gunzip", gzip.decompress(data)
    elif data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for name in archive.namelist():
                yield name, archive.read(name)


def sqlite_values(path: Path) -> Iterator[tuple[str, bytes]]:
    """Every text and blob value of every table, read from a copy (with its write-ahead log, so recent writes are
    in it; the live database stays untouched and unlocked)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / path.name
        for suffix in ("", "-wal", "-shm"):
            source = path.with_name(path.name + suffix)
            if source.exists():
                shutil.copyfile(source, Path(tmp) / source.name)
        connection = sqlite3.connect(copy)
        try:
            tables = [r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                try:
                    cursor = connection.execute(f'SELECT * FROM "{table}"')
                    rows = cursor.fetchall()
                except sqlite3.DatabaseError:  # a virtual table whose module is not loaded here (FTS)
                    continue
                columns = [c[0] for c in cursor.description]
                for n, row in enumerate(rows):
                    for column, value in zip(columns, row, strict=True):
                        if isinstance(value, str):
                            yield f"{table}.{column} row {n}", value.encode("utf-8", "surrogateescape")
                        elif isinstance(value, bytes):
                            yield f"{table}.{column} row {n}", value
        finally:
            connection.close()


def texts_of_records(records: Iterable[logging.LogRecord]) -> Iterator[str]:
    """Each log record as a handler could print it: logger, level, message with its arguments, exception and stack."""
    for record in records:
        parts = [f"{record.name} {record.levelname}: {record.getMessage()}"]
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
        parts += [text for text in (record.exc_text, record.stack_info) if text]
        yield "\n".join(parts)
