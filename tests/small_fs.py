"""Small real file systems for the disk-full tests: a tmpfs of a given size, filled and grown on demand.

A tmpfs is a real file system to every writer (write(2) returns ENOSPC, short writes happen at its
edge, statvfs reports its size), needs no image and no loop device, and `mount -o remount,size=`
grows it in place, which is "space returns" without moving a file. Mounting needs root, as CI has:
a test that cannot mount fails, it is never skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

MiB = 1 << 20
FILLER = "filler"


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(argv)} failed (the disk tests need root): {done.stderr.strip()}"


@contextlib.contextmanager
def small_fs(size_mib: int, prefix: str = "qfs-") -> Iterator[Path]:
    """A fresh tmpfs of `size_mib` MiB on a short path under /tmp, unmounted (and removed) afterwards."""
    where = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    _run("mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0755", "tmpfs", str(where))
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)
        shutil.rmtree(where, ignore_errors=True)


def free(path: Path) -> int:
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


def fill(root: Path, leave: int = 0) -> Path:
    """Take all but `leave` bytes of `root`'s file system with a filler file (written, so the pages are real)."""
    filler = root / FILLER
    want = max(0, free(root) - leave)
    with filler.open("ab") as handle:
        chunk = bytes(MiB)
        while want > 0:
            try:
                want -= handle.write(chunk[:min(want, MiB)])
            except OSError:
                break
    return filler


def grow(root: Path, size_mib: int) -> None:
    """Space returns: the same file system, larger."""
    _run("mount", "-o", f"remount,size={size_mib}m", str(root))


def leftovers(run_dir: Path) -> list[str]:
    """Anything half written a run left: temp checkpoints, atomic writes' temp files, the disk reserve."""
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*")
                  if p.name.startswith(".tmp-") or p.name.endswith(".tmp") or p.name == ".disk-reserve")
