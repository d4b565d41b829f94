"""The daemon's own state writes on a disk that fills: refused plainly, reported once, resumed when space returns.

The registry (SQLite), the surfaces registry and its audit log, the GPU
reservation and its audit log all live in the state dir. When a write there
fails for want of space (ENOSPC, EDQUOT, EIO; SQLite's SQLITE_FULL and I/O
errors), nothing half made is kept (the registry's transaction rolls back, an
audit record is cut back with its companion write), the request that asked
for it gets a 507 naming the file and the free space (`StateWriteError`, a
RequestError), the daemon logs it and tells the journal once per episode, and
`problems()` lists it for /health, /disk and the host screen. Reads, /health
and the runs go on. Every later write tries again; the first that succeeds
with room on the disk again ends the episode, said the same way. Threads that write on their own (the
sampler, the monitor, the GPU queue) treat a StateWriteError as already
reported.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from qwen_daemon.protocol.disk import StateWriteProblem
from qwen_daemon.protocol.errors import RequestError
from qwen_train.disk import disk_errno, errno_words, free_space, size_text

if TYPE_CHECKING:
    from qwen_daemon.systemd.journal import JournalWriter

log = logging.getLogger(__name__)

INSUFFICIENT_STORAGE = 507
_SQLITE_DISK = {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR}
RECOVERED_BYTES = 1 << 20  # free space that ends an episode, with a write that succeeded


class StateWriteError(RequestError):
    """A state write the disk refused: a 507 to the client that asked, a known problem to every other writer."""

    def __init__(self, what: str, path: Path, words: str) -> None:
        super().__init__(INSUFFICIENT_STORAGE, f"the daemon could not write its {what} {path}: {words}",
                         "nothing was changed and nothing half written kept; reads and runs go on. Free space "
                         "on the daemon's state dir and try again: the daemon writes again as soon as it can")
        self.what = what


def disk_words(exc: BaseException) -> str | None:
    """What a full disk did to this write, in words; None when `exc` is not a disk problem."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and (code & 0xFF) in _SQLITE_DISK:
            return f"{exc} ({getattr(exc, 'sqlite_errorname', 'SQLite')})"
        return None
    code = disk_errno(exc)
    return errno_words(code) if code is not None else None


class StateWrites:
    """Where the daemon's state writes stand: the failing ones, each since when. Thread-safe."""

    def __init__(self, journal: JournalWriter | None = None) -> None:
        self.journal = journal
        self._lock = threading.Lock()
        self._failing: dict[str, StateWriteProblem] = {}

    @contextmanager
    def guard(self, what: str, path: Path) -> Iterator[None]:
        """A state write: one the disk refuses becomes StateWriteError; one that succeeds ends an episode."""
        try:
            yield
        except StateWriteError:
            raise
        except Exception as exc:
            words = disk_words(exc)
            if words is None:
                raise
            self._failed(what, path, words)
            raise StateWriteError(what, path, words) from exc
        self._succeeded(what, path)

    def problems(self) -> list[StateWriteProblem]:
        with self._lock:
            return sorted(self._failing.values(), key=lambda p: p.since)

    def _failed(self, what: str, path: Path, words: str) -> None:
        with self._lock:
            known = self._failing.get(what)
            count = known.failures + 1 if known else 1
            self._failing[what] = StateWriteProblem(what, str(path), words, known.since if known else time.time(),
                                                    count)
        if known is None:
            message = f"cannot write the {what} {path}: {words}; {free_words(path)}; reads go on, writes retry"
            log.error("%s", message)
            self._tell(message, what, path, "failed", 3)

    def _succeeded(self, what: str, path: Path) -> None:
        """Ends the episode once the disk has room again: on a full one, a small write can still land in space
        a failed one left allocated (SQLite's WAL), and the next larger one fails again."""
        with self._lock:
            if what not in self._failing or not _has_room(path):
                return
            known = self._failing.pop(what)
        message = f"the {what} {path} is written again, after {known.failures} failed write(s)"
        log.warning("%s", message)
        self._tell(message, what, path, "resumed", 5)

    def _tell(self, message: str, what: str, path: Path, outcome: str, priority: int) -> None:
        if self.journal is not None:
            self.journal.send(message, {"QWEN_STATE_WRITE": outcome, "QWEN_STATE_WHAT": what,
                                        "QWEN_STATE_PATH": str(path)}, priority=priority)


def _has_room(path: Path) -> bool:
    try:
        return free_space(path.parent).free_bytes >= RECOVERED_BYTES
    except OSError:
        return True  # nothing to say it is still full: the write went through


def free_words(path: Path) -> str:
    try:
        space = free_space(path.parent)
    except OSError:
        return "its file system cannot be read"
    return f"{space.checked} has {size_text(space.free_bytes)} free of {size_text(space.total_bytes)}"
