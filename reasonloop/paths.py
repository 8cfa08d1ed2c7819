"""Where the project is (the root that relative paths in the configuration resolve against), and files' hashes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def project_root() -> Path:
    """REASONLOOP_ROOT, else the working directory when it holds configs/, else the source checkout."""
    if env := os.environ.get("REASONLOOP_ROOT"):
        return Path(env).resolve()
    cwd = Path.cwd()
    if (cwd / "configs" / "default.yaml").is_file():
        return cwd
    return Path(__file__).resolve().parents[1]


def shown(path: Path) -> str:
    """A path as runs log and people read it: relative to the project root when it is inside it."""
    root = project_root()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in 1 MB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
