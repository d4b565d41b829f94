"""Reading files that another party can write: run dirs, specs, bundles, checkpoints, corpora.

A trainer in a container writes its run dir and any socket user names a spec path, so a
file the daemon or the trainer reads may be a FIFO (open() blocks until a writer comes),
a device (/dev/zero never ends), a symlink to either, or a regular file far larger than
its kind ever is. Every such read goes through `read_regular`: open without blocking,
refuse anything that is not a regular file, and never read more than the kind's bound.
JSON from such places goes through `decode_json`, which also bounds nesting depth, so a
hostile body is a clear ValueError, never a RecursionError or a MemoryError.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path
from typing import TypeVar

import msgspec

T = TypeVar("T")

MiB = 1 << 20
MAX_JSON_DEPTH = 64
"""Deeper than any record this project writes (specs, status, bundles nest under ten)."""

_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


class UnsafeFile(ValueError):
    """A file that is not a regular file, is over its size bound, or cannot be opened safely."""


def read_regular(path: Path | str, limit: int, *, what: str = "file", nofollow: bool = False) -> bytes:
    """The bytes of `path`, refusing special files and anything over `limit` bytes.

    `nofollow` also refuses a symlink as the last component (for files inside a run dir, which
    only the trainer writes and never as a link). FileNotFoundError passes through unchanged so
    callers keep their own "not there yet" handling.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_NOFOLLOW if nofollow else 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP and nofollow:
            raise UnsafeFile(f"{what} {path} is a symlink: refused, it must be a regular file") from None
        raise UnsafeFile(f"{what} {path} cannot be opened ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(f"{what} {path} is not a regular file ({file_kind(info.st_mode)}): refused")
        if info.st_size > limit:
            raise UnsafeFile(f"{what} {path} is {info.st_size} bytes, over the {limit}-byte bound for it: refused")
        data = _read_upto(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:  # it grew while we read
        raise UnsafeFile(f"{what} {path} is over the {limit}-byte bound for it: refused")
    return data


def _read_upto(fd: int, count: int) -> bytes:
    chunks: list[bytes] = []
    left = count
    while left > 0:
        chunk = os.read(fd, min(left, MiB))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def file_kind(mode: int) -> str:
    """Words for what a non-regular file is ("a FIFO"), for refusals that name it."""
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "a special file"


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in `data`, skipping string contents."""
    depth = deepest = 0
    for match in _JSON_TOKEN.finditer(data):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


def check_json_depth(data: bytes, source: str, limit: int = MAX_JSON_DEPTH) -> None:
    # Counting brackets runs at memory speed and bounds the depth from above: a large flat record (a
    # bundle's split lists) never needs the token scan, which costs about 70 ms a MB.
    if data.count(b"[") + data.count(b"{") <= limit:
        return
    if json_depth(data) > limit:
        raise ValueError(f"{source}: JSON nested deeper than {limit} levels: refused")


def decode_json(data: bytes, kind: type[T], source: str, *, depth: int = MAX_JSON_DEPTH) -> T:
    """`data` decoded as `kind`; a ValueError naming `source` for too deep, malformed or mistyped JSON."""
    check_json_depth(data, source, depth)
    try:
        return msgspec.json.decode(data, type=kind)
    except msgspec.ValidationError as exc:
        raise ValueError(f"{source}: {exc}") from None
    except (msgspec.DecodeError, RecursionError, MemoryError) as exc:
        raise ValueError(f"{source}: not valid JSON ({exc})") from None


def read_json(path: Path, kind: type[T], limit: int, *, what: str = "file", nofollow: bool = False) -> T:
    """`read_regular` then `decode_json`: the one way to load a JSON record from a shared place."""
    return decode_json(read_regular(path, limit, what=what, nofollow=nofollow), kind, f"{what} {path}")
