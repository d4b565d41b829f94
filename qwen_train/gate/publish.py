"""Putting a verdict and the samples it judged into RUN_DIR/gate/ as one change.

The verdict and the clones it was decided on (samples.json and samples/*.wav)
belong together: an operator listening to the samples must hear what the
verdict beside them judged. So nothing is written into gate/ itself. The new
contents are written into a fresh sibling, RUN_DIR/.gate.new, made durable
there, and then swapped in for gate/ in one rename (Linux renameat2
RENAME_EXCHANGE). A crash before the swap leaves the previous verdict with
its own samples; after it, the new ones. Whatever the earlier gate left (the
wavs of a run that cloned more rows) goes with the old dir.

Where the exchange is not available (another OS, a file system without it)
the old dir is renamed aside and the new one renamed in: a crash between the
two renames leaves no gate/ (no verdict, which reads as not passed) and the
old one in RUN_DIR/.gate.old, never a mix.
"""

from __future__ import annotations

import ctypes
import os
import shutil
from pathlib import Path

import msgspec

from qwen_train.atomic import atomic_write_bytes, fsync_dir
from qwen_train.gate.clones import Clone, write_samples
from qwen_train.gate.verdict import GATE_DIR, VERDICT_FILE, GateVerdict

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically; False where the system cannot (nothing changed then)."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    return bool(renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0)


def _sync_tree(root: Path) -> None:
    """fsync every file under `root` and every directory, so the swap never exposes unwritten audio."""
    for here, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(here, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(here))


def swap_in(staged: Path, final: Path) -> None:
    """Make `staged` (a complete, durable dir) be `final`, replacing whatever `final` was."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        if _exchange(staged, final):
            shutil.rmtree(staged, ignore_errors=True)  # now the previous contents
            fsync_dir(final.parent)
            return
        final.rename(old)
    staged.rename(final)
    fsync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)


def publish(run_dir: Path, verdict: GateVerdict, clones: list[Clone]) -> Path:
    """Write the verdict and its samples into a fresh RUN_DIR/.gate.new, swap it in as gate/; the verdict's path."""
    staged = run_dir / f".{GATE_DIR}.new"
    shutil.rmtree(staged, ignore_errors=True)  # what a crashed gate left
    staged.mkdir()
    if clones:
        write_samples(staged, clones)
    atomic_write_bytes(staged / VERDICT_FILE, msgspec.json.format(msgspec.json.encode(verdict), indent=2) + b"\n")
    _sync_tree(staged)
    swap_in(staged, run_dir / GATE_DIR)
    return run_dir / GATE_DIR / VERDICT_FILE
