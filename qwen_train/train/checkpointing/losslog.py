"""RUN_DIR/losses.jsonl: one line per applied step, cut back whenever the run goes back to a checkpoint.

The dashboard's curves and the exact-resume tests read it; after a resume or
a rollback the steps past the checkpoint are about to be trained again, so
their lines go first (a line cut short by a kill is dropped, never fatal).
The log is read back through `safe_read` (a run dir is writable from inside the
trainer's container): a FIFO, a symlink or an oversized log refuses the resume
by name instead of blocking it or rewriting a file elsewhere. On a full disk a line is
appended whole or not at all, and the cut back replaces the log atomically: a
reader never meets a torn line or half a log (DiskFull names the log).
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from qwen_train.atomic import append_whole, atomic_write_bytes
from qwen_train.checkpoint_files import CheckpointError
from qwen_train.disk import disk_writes
from qwen_train.safe_read import MiB, UnsafeFile, read_regular
from qwen_train.status import Losses

LOSSES_FILE = "losses.jsonl"
LOSSES_LIMIT = 1024 * MiB  # ~90 bytes a step: ten million steps


def append_losses(run_dir: Path, step: int, losses: Losses) -> None:
    """One line, whole or not at all: on a full disk the log is cut back to its last whole line (DiskFull)."""
    line = msgspec.json.encode({"step": step, "total": losses.total, "talker": losses.talker,
                                "code_predictor": losses.code_predictor})
    with disk_writes(LOSSES_FILE, run_dir):
        append_whole(run_dir / LOSSES_FILE, line + b"\n", mode=0o644)


def truncate_losses(run_dir: Path, step: int) -> None:
    """Drop loss lines past `step`: those steps are about to be trained again."""
    path = run_dir / LOSSES_FILE
    if not path.exists():
        return
    try:
        raw = read_regular(path, LOSSES_LIMIT, what="loss log", nofollow=True)
    except UnsafeFile as exc:
        raise CheckpointError(f"{exc}; move it out of the run dir to resume") from None
    keep = []
    for line in raw.splitlines():
        line_step = _step_of(line)
        if line_step is not None and line_step <= step:
            keep.append(line)
    with disk_writes(LOSSES_FILE, run_dir):
        atomic_write_bytes(path, b"".join(line + b"\n" for line in keep))


def _step_of(line: bytes) -> int | None:
    try:
        return int(msgspec.json.decode(line)["step"])
    except (msgspec.DecodeError, KeyError, TypeError, ValueError):
        return None
