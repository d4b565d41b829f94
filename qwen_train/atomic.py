"""Crash-safe file writes: temp file in the same directory, fsync, rename.

A reader (the daemon, a resume) sees either the old file or the new one,
never a torn write.
"""

from __future__ import annotations

import contextlib
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


def append_durable(path: Path, line: bytes) -> None:
    """Append one record to an append-only log and fsync it: an audited change is never made without its record.

    One write(2) of a line under O_APPEND lands whole at the end, so concurrent appenders never interleave.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        os.write(fd, line if line.endswith(b"\n") else line + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


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
