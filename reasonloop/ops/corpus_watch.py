"""Watch the corpus folder and start a reindex when its files change.

Polling, not inotify: it works the same on network and container file systems. A change must hold for
`settle_s` before it counts, so a copy in progress starts one reindex when it finishes, not one per file.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from reasonloop.retrieval.sources import corpus_files

log = logging.getLogger(__name__)


def corpus_fingerprint(root: Path, include: list[str]) -> str:
    """sha256 over every matching file's relative path, size and modification time (no file is read)."""
    digest = hashlib.sha256()
    if root.is_dir():
        for path in corpus_files(root, include):
            try:
                stat = path.stat()
            except FileNotFoundError:  # removed while we listed
                continue
            digest.update(f"{path.relative_to(root).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


class CorpusWatcher:
    """Calls `on_change(fingerprint)` once per settled change of the corpus; `poll` is one look (tests call it
    with their own clock), `start` polls on a daemon thread every `interval_s`."""

    def __init__(self, root: Path, include: list[str], on_change: Callable[[str], None], interval_s: float,
                 settle_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.root, self.include, self.on_change = root, include, on_change
        self.interval_s, self.settle_s, self.clock = interval_s, settle_s, clock
        self.seen = corpus_fingerprint(root, include)  # the corpus as it was when watching began
        self._pending: tuple[str, float] | None = None  # (fingerprint, since) of a change not yet settled
        self._stop = threading.Event()

    def poll(self) -> bool:
        """Look once; True when a settled change was handed to `on_change`."""
        current = corpus_fingerprint(self.root, self.include)
        if current == self.seen:
            self._pending = None
            return False
        now = self.clock()
        if self._pending is None or self._pending[0] != current:
            self._pending = (current, now)  # a new change, or still changing: wait for it to hold
        if now - self._pending[1] < self.settle_s:
            return False
        self.on_change(current)
        self.seen, self._pending = current, None
        return True

    def start(self) -> threading.Thread:
        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                try:
                    self.poll()
                except Exception:  # noqa: BLE001 - a failed look (or trigger) must not end the watch
                    log.exception("corpus watch: could not look at %s or start the reindex; trying again", self.root)

        thread = threading.Thread(target=loop, name="corpus-watch", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
