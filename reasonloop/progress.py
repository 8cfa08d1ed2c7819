"""Progress of long work, reported by tasks and drawn by whoever listens (the CLI's rich progress bar).

Tasks stay free of terminal code: they call `advance()`; with no listener installed it does nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

Listener = Callable[[str, int, int | None], None]  # (stage, units just finished, total units if known)
_listeners: list[Listener] = []


def advance(stage: str, step: int, total: int | None = None) -> None:
    for listener in list(_listeners):
        listener(stage, step, total)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)
