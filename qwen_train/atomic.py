"""Crash-safe file writes: temp file in the same directory, fsync, rename.

A reader (the daemon, a resume) sees either the old file or the new one,
never a torn write.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import TypeVar

from qwen_train.safe_read import decode_json, read_regular

T = TypeVar("T")


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write `data` to `path` atomically. `durable` also fsyncs file and directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str, *, durable: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


def append_whole(path: Path, data: bytes, *, durable: bool = False, mode: int = 0o640) -> int:
    """Append `data` whole or not at all; return the file's size before it (`undo_append` goes back there).

    A full disk can take part of a write: that part would stay as a torn record that every later read
    refuses. So a short or failed write (or fsync) cuts the file back to where it was (a truncate needs no
    space) and raises OSError. One write(2) under O_APPEND lands whole at the end, so concurrent
    appenders never interleave; the cut back assumes one writer per file (each caller holds its lock).
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, mode)
    try:
        start = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, f"only {written} of {len(data)} bytes written", str(path))
            if durable:
                os.fsync(fd)
        except OSError:
            os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)
    return start


def undo_append(path: Path, start: int) -> None:
    """Cut an append-only file back to `start` bytes: the append whose companion write failed never happened."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, start)
        os.fsync(fd)
    finally:
        os.close(fd)


def append_durable(path: Path, line: bytes) -> int:
    """Append one record to an append-only log and fsync it: an audited change is never made without its record.

    Whole or not at all (`append_whole`); returns the log's size before it, for `undo_append`.
    """
    return append_whole(path, line if line.endswith(b"\n") else line + b"\n", durable=True)


MAX_LOG_BYTES = 64 << 20
"""An audit log's bound: some 300,000 records, decades of an operator's changes."""


def read_appended(path: Path, kind: type[T]) -> list[T]:
    """Every record of an append-only log written by `append_durable` (none when it does not exist yet).

    Read through safe_read: a FIFO or a device planted in its place is refused, never waited on.
    """
    try:
        lines = read_regular(path, MAX_LOG_BYTES, what="audit log").splitlines()
    except FileNotFoundError:
        return []
    return [decode_json(line, kind, f"audit log {path}") for line in lines if line.strip()]
