"""A run's durable checkpoints as its detail shows them: step, when, size on disk, cursor, resume target.

Read from the trainer's files (RUN_DIR/checkpoints/step-N/meta.json) on every
detail poll, so nothing here hashes: verifying a checkpoint re-reads GiBs.
The manifest's file sizes are compared with a stat of the files instead,
which catches a truncated or missing file for the price of a stat; what a
hash would catch (altered bytes) is the trainer's check at resume. Temp dirs
(`.tmp-step-N`, a save still in progress or one a crash left) are not
durable and not listed. A checkpoint that cannot be read is a row with its
error, never a failed request.

The layout and the manifest come from qwen_train.checkpoint_files, the
torch-free half of the trainer's checkpoint code (the daemon imports no
torch: DESIGN §2, and a host install has none).
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from qwen_daemon.protocol import CheckpointView
from qwen_train.checkpoint_files import (
    CKPT_DIR,
    CheckpointError,
    CheckpointMeta,
    list_checkpoints,
    read_meta,
    step_of,
)


class CheckpointsUnreadable(OSError):
    """The checkpoints dir exists but cannot be listed."""


def durable_dirs(run_dir: Path) -> list[Path]:
    """The completed checkpoints, oldest first; CheckpointsUnreadable when the dir cannot be listed."""
    try:
        return list_checkpoints(run_dir)
    except OSError as exc:
        raise CheckpointsUnreadable(f"cannot list {run_dir / CKPT_DIR}: {exc.strerror}") from None


def _disk_sizes(ckpt: Path) -> dict[str, int]:
    """Each plain file in the checkpoint dir and its size (a file that vanished meanwhile is left out)."""
    sizes: dict[str, int] = {}
    for entry in os.scandir(ckpt):
        try:
            if entry.is_file(follow_symlinks=False):
                sizes[entry.name] = entry.stat(follow_symlinks=False).st_size
        except FileNotFoundError:
            continue
    return sizes


def _size_problem(meta: CheckpointMeta, sizes: dict[str, int]) -> str | None:
    """The first file the manifest lists that is missing or not its listed size."""
    for name, entry in sorted(meta.files.items()):
        if name not in sizes:
            return f"{name} is missing"
        if sizes[name] != entry.size:
            return f"{name} is {sizes[name]} bytes, its manifest says {entry.size} (truncated?)"
    return None


def read_checkpoint(ckpt: Path) -> CheckpointView:
    """One checkpoint's row: its meta and sizes, or its error (and the step its name gives).

    Raises FileNotFoundError for a checkpoint that is gone (pruned since it was listed).
    """
    view = CheckpointView(name=ckpt.name, step=step_of(ckpt.name))
    try:
        sizes = _disk_sizes(ckpt)
    except FileNotFoundError:
        raise
    except OSError as exc:
        return msgspec.structs.replace(view, error=f"cannot list {ckpt.name}: {exc.strerror}")
    view = msgspec.structs.replace(view, size_bytes=sum(sizes.values()))
    try:
        meta = read_meta(ckpt)
    except CheckpointError as exc:
        if not ckpt.exists():
            raise FileNotFoundError(ckpt) from None
        return msgspec.structs.replace(view, error=str(exc).removeprefix(f"checkpoint {ckpt}: "))
    return msgspec.structs.replace(
        view,
        step=meta.step,
        created_at=meta.created_at,
        epoch=meta.cursor.epoch,
        position=meta.cursor.position,
        batches_per_epoch=meta.cursor.batches_per_epoch,
        error=_size_problem(meta, sizes),
    )


def list_kept(run_dir: Path) -> list[CheckpointView]:
    """The run's durable checkpoints, oldest first; the newest is the one a resume uses.

    A checkpoint pruned between listing and reading (retention keeps the newest
    few while the run trains) is left out rather than shown as broken.
    Raises CheckpointsUnreadable when the checkpoints dir cannot be listed.
    """
    rows: list[CheckpointView] = []
    for ckpt in durable_dirs(run_dir):
        try:
            rows.append(read_checkpoint(ckpt))
        except FileNotFoundError:
            continue
    if rows:
        rows[-1] = msgspec.structs.replace(rows[-1], resume=True)
    return rows
