"""A disk that fills: how much is free where a run writes, and what a write that hit a full disk is.

Torch-free, like spec.py and status.py: the trainer checks free space before
every checkpoint and ends its run `failed_disk_full` when a write meets a full
disk (train/device/diskspace.py), `qwen-train plan` prints the space a run needs
(plan/disk.py), and the daemon reads the same free space at launch and on the
host screen. One reading, one set of words, so they never disagree.

A full disk reaches a writer as one of three errors: ENOSPC (the file system
is full), EDQUOT (the writer's quota is), EIO (the device failed the write; on
some file systems a delayed write to a full disk surfaces here too). torch
and other libraries wrap the OSError in their own exceptions (torch.save
raises a RuntimeError whose context is the ENOSPC), so `disk_errno` looks
through the whole chain; Rust-backed writers (safetensors) raise an error
whose only trace of the errno is Rust's "(os error 28)" in its text, which
counts too. `DiskFull` is the trainer's own exception for it:
what was being written, where, and the numbers the message needs.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO})
_RUST_IO = re.compile(r"\(os error (\d+)\)")  # how Rust's std::io::Error prints an errno
_WORDS = {errno.ENOSPC: "no space left on the device (ENOSPC)", errno.EDQUOT: "disk quota exceeded (EDQUOT)",
          errno.EIO: "input/output error (EIO): the device failed the write"}


class FreeSpace(msgspec.Struct, frozen=True):
    """The file system that holds `path` (or would: `checked` is its nearest existing ancestor)."""

    path: str
    checked: str
    free_bytes: int  # what an unprivileged writer may still use (statvfs f_bavail)
    total_bytes: int
    device: int  # st_dev: two paths with the same one share their free space


def free_space(path: Path | str) -> FreeSpace:
    """Free and total bytes of the file system `path` is (or will be) on; OSError if nothing on the way exists."""
    asked = Path(path).absolute()
    here = asked
    while not here.exists() and here != here.parent:
        here = here.parent
    info = os.statvfs(here)
    return FreeSpace(path=str(asked), checked=str(here), free_bytes=info.f_bavail * info.f_frsize,
                     total_bytes=info.f_blocks * info.f_frsize, device=os.stat(here).st_dev)


def disk_errno(exc: BaseException | None) -> int | None:
    """The errno of the full-disk OSError somewhere in `exc`'s chain (cause or context), or None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFull):
            return exc.errno
        if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
            return exc.errno
        rust = _RUST_IO.search(str(exc))  # safetensors and other Rust writers: no OSError, only its text
        if rust is not None and int(rust.group(1)) in DISK_ERRNOS:
            return int(rust.group(1))
        exc = exc.__cause__ or exc.__context__
    return None


def errno_words(code: int | None) -> str:
    if code is None:
        return "not enough free space"
    return _WORDS.get(code, os.strerror(code))


def size_text(value: int | float) -> str:
    """Bytes in binary units, three significant figures: what the operator compares against `df -h`."""
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(amount) < 1024 or unit == "TiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.3g} {unit}"
        amount /= 1024
    return f"{amount:.3g} TiB"


class DiskFull(Exception):
    """A write the disk could not take (or would not have: the check before a checkpoint).

    `what` names the file or record ("checkpoint step-00000060", "status.json"), `path` where it went;
    `need`/`free` are set when the shortfall was measured before writing, `errno` when a write failed.
    """

    def __init__(self, what: str, path: Path | str, *, errno: int | None = None, need: int | None = None,
                 free: int | None = None, detail: str = "") -> None:
        self.what = what
        self.path = Path(path)
        self.errno = errno
        self.need = need
        self.free = free
        self.detail = detail
        super().__init__(self.describe())

    def describe(self) -> str:
        if self.need is not None and self.free is not None:
            return (f"{self.what} needs {size_text(self.need)} in {self.path} and its file system has "
                    f"{size_text(self.free)} free")
        return f"writing {self.what} in {self.path} failed: {errno_words(self.errno)}{self.detail}"


@contextmanager
def disk_writes(what: str, path: Path | str) -> Iterator[None]:
    """Turn a full disk met inside the block into DiskFull naming `what` and `path`; other errors pass."""
    try:
        yield
    except DiskFull:
        raise
    except Exception as exc:
        code = disk_errno(exc)
        if code is None:
            raise
        raise DiskFull(what, path, errno=code) from exc
