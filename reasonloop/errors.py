"""One exception tree for reasonloop; every error says where the problem is and what to do next.

    ReasonloopError
     ├── ConfigError          invalid YAML/env configuration (names the key and the allowed values)
     ├── InputError           a bad input file, row or field (names the file, line and field)
     │    └── EmptyInputError nothing to work on (empty question set, no documents)
     ├── ModelIntegrityError  embedding weights missing or with an unexpected sha256
     ├── PromptError          a prompt template that is missing, malformed or fails to render
     └── ProviderError        a provider (LLM, judge, vector store) could not be built or reached

    ReasonloopWarning         our own warnings (tests turn them into errors)
"""

from __future__ import annotations

from pathlib import Path


class ReasonloopError(Exception):
    """Base class: the CLI prints the message and exits non-zero without a traceback."""


class ConfigError(ReasonloopError):
    """The configuration (YAML files, profile or REASONLOOP_* variables) is invalid."""


class InputError(ReasonloopError):
    """A bad input file, row or field; the message names all three when known."""

    def __init__(self, message: str, *, path: Path | str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        where = ":".join(str(p) for p in (self.path, line) if p is not None)
        prefix = f"{where}: " if where else ""
        suffix = f" (field '{field}')" if field else ""
        super().__init__(f"{prefix}{message}{suffix}")


class EmptyInputError(InputError):
    """There is nothing to work on: an empty question set or corpus."""


class ModelIntegrityError(ReasonloopError):
    """The embedding model's weights are missing or differ from the pinned sha256."""


class PromptError(ReasonloopError):
    """A prompt template is missing, malformed, or does not render with its declared variables."""


class ProviderError(ReasonloopError):
    """A provider could not be built (e.g. missing API key) or did not answer usefully."""


class ReasonloopWarning(UserWarning):
    """Warnings raised by reasonloop itself."""
