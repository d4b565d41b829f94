"""Opening a file in a run dir, which a trainer (perhaps in a container, perhaps broken or hostile) can replace.

`qwen_train.safe_read.read_regular` reads a whole file of bounded size, and is what the daemon uses for
every JSON record. Three uses need the open file instead: losses.jsonl is read from an offset (it
grows for weeks), the log is read from its tail, and the log is appended to. Each goes through
`open_regular`, which opens the path once, never follows a symlink as the last component (the daemon
must not append to, or chmod, whatever a link points at), never blocks (a FIFO in place of the file),
and hands back the descriptor only for a regular file; anything else is a `UnsafeFile` naming it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from qwen_train.safe_read import UnsafeFile
from qwen_train.safe_read import file_kind as kind_of

_ALWAYS = os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC


def open_regular(path: Path, what: str, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """A blocking-mode descriptor on `path` if it is a regular file; UnsafeFile if it is anything else.

    FileNotFoundError and other OSErrors of the open itself pass through, so callers keep their own
    "not there yet" and "cannot read" handling."""
    try:
        fd = os.open(path, flags | _ALWAYS, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFile(f"{what} {path} is a symlink: refused, it must be a regular file") from None
        if exc.errno == errno.ENXIO:  # a FIFO opened for writing with no reader (or a device without one)
            raise UnsafeFile(f"{what} {path} is not a regular file (a FIFO or a device): refused") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnsafeFile(f"{what} {path} is not a regular file ({kind_of(mode)}): refused")
        os.set_blocking(fd, True)  # no effect on a regular file's reads; a child's inherited stdout stays plain
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_append(path: Path, what: str) -> BinaryIO:
    """`path` opened for appending (created if missing), refusing a planted FIFO, device or symlink."""
    fd = open_regular(path, what, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    return os.fdopen(fd, "ab")


def append_whole_regular(path: Path, data: bytes, what: str) -> None:
    """Append `data` to a regular file whole or not at all: a full disk mid-way cuts it back to where it was.

    A log that ends in half a container's output reads as if the trainer had stopped mid-line; one that
    lacks the output altogether says nothing false, and the caller keeps the source (open_append's
    refusals apply)."""
    fd = open_regular(path, what, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        start = os.fstat(fd).st_size
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)


def read_tail(path: Path, count: int, what: str) -> bytes:
    """The last `count` bytes (or fewer) of a regular file, however large it is."""
    fd = open_regular(path, what)
    try:
        size = os.fstat(fd).st_size
        return os.pread(fd, count, max(0, size - count))
    finally:
        os.close(fd)


def chmod_regular(path: Path, mode: int, what: str) -> None:
    """chmod a file the daemon just wrote into a run dir, through a descriptor: a trainer that swapped in a
    symlink meanwhile must not get the daemon to change the mode of the link's target."""
    fd = open_regular(path, what)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
