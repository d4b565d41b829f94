"""RUN_DIR/losses.jsonl: one line per applied step, cut back whenever the run goes back to a checkpoint.

The dashboard's curves and the exact-resume tests read it; after a resume or
a rollback the steps past the checkpoint are about to be trained again, so
their lines go first (a line cut short by a kill is dropped, never fatal).
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from qwen_train.atomic import atomic_write_bytes
from qwen_train.status import Losses

LOSSES_FILE = "losses.jsonl"


def append_losses(run_dir: Path, step: int, losses: Losses) -> None:
    line = msgspec.json.encode({"step": step, "total": losses.total, "talker": losses.talker,
                                "code_predictor": losses.code_predictor})
    with (run_dir / LOSSES_FILE).open("ab") as handle:
        handle.write(line + b"\n")


def truncate_losses(run_dir: Path, step: int) -> None:
    """Drop loss lines past `step`: those steps are about to be trained again."""
    path = run_dir / LOSSES_FILE
    if not path.exists():
        return
    keep = []
    for line in path.read_bytes().splitlines():
        line_step = _step_of(line)
        if line_step is not None and line_step <= step:
            keep.append(line)
    atomic_write_bytes(path, b"".join(line + b"\n" for line in keep))


def _step_of(line: bytes) -> int | None:
    try:
        return int(msgspec.json.decode(line)["step"])
    except (msgspec.DecodeError, KeyError, TypeError, ValueError):
        return None
