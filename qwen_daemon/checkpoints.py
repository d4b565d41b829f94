"""A run's durable checkpoints as its detail shows them: step, when, size on disk, cursor, resume target.

Read from the trainer's files (RUN_DIR/checkpoints/step-N/meta.json) on every
detail poll, so nothing here hashes: verifying a checkpoint re-reads GiBs.
The manifest's file sizes are compared with a stat of the files instead,
which catches a truncated or missing file for the price of a stat; what a
hash would catch (altered bytes) is the trainer's check at resume. Temp dirs
(`.tmp-step-N`, a save still in progress or one a crash left) are not
durable and not listed. A checkpoint that cannot be read is a row with its
error, never a failed request.

Why not qwen_train.train.checkpoint's `list_checkpoints` and `read_meta`:
that module, and the Cursor its CheckpointMeta decodes into, import torch,
and the daemon imports none (DESIGN §2: contracts only). A host install
(`pip install .`, no `train` extra) has no torch at all, and where it is
installed it would cost the daemon seconds and hundreds of MiB. So the same
files are read here through the subset of CheckpointMeta's fields the detail
shows, with msgspec ignoring the rest; tests/test_daemon_checkpoints.py runs
both readers over checkpoints written by `save_checkpoint`, so the two cannot
drift apart unnoticed.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from qwen_daemon.protocol import CheckpointView

CKPT_DIR = "checkpoints"  # qwen_train.train.checkpoint.CKPT_DIR
META_FILE = "meta.json"  # qwen_train.train.checkpoint.META_FILE
PREFIX = "step-"  # qwen_train.train.checkpoint.checkpoint_name


class CursorFields(msgspec.Struct, frozen=True):
    """What the detail shows of qwen_train.train.cursor.Cursor."""

    epoch: int
    position: int
    batch_size: int
    world_size: int
    rows: int

    @property
    def batches_per_epoch(self) -> int:
        """Cursor.batches_per_epoch: whole global batches per epoch (the last partial one is dropped)."""
        return self.rows // (self.batch_size * self.world_size) if self.batch_size * self.world_size > 0 else 0


class FileSize(msgspec.Struct, frozen=True):
    size: int


class MetaFields(msgspec.Struct, frozen=True):
    """What the detail shows of qwen_train.train.checkpoint.CheckpointMeta."""

    step: int
    cursor: CursorFields
    created_at: float
    files: dict[str, FileSize]


class CheckpointsUnreadable(OSError):
    """The checkpoints dir exists but cannot be listed."""


def durable_dirs(run_dir: Path) -> list[Path]:
    """The completed checkpoints, oldest first (zero-padded steps sort by name), as list_checkpoints has them."""
    root = run_dir / CKPT_DIR
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise CheckpointsUnreadable(f"cannot list {root}: {exc.strerror}") from None
    return sorted(Path(e.path) for e in entries if e.name.startswith(PREFIX) and e.is_dir())


def _step_of(name: str) -> int | None:
    digits = name[len(PREFIX):]
    return int(digits) if digits.isdigit() else None


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


def _read_meta(ckpt: Path) -> MetaFields:
    """Raises ValueError naming the file and what is wrong with it."""
    path = ckpt / META_FILE
    try:
        return msgspec.json.decode(path.read_bytes(), type=MetaFields)
    except OSError as exc:
        raise ValueError(f"cannot read {META_FILE} ({exc.strerror})") from None
    except msgspec.MsgspecError as exc:
        raise ValueError(f"malformed {META_FILE}: {exc}") from None


def _size_problem(meta: MetaFields, sizes: dict[str, int]) -> str | None:
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
    view = CheckpointView(name=ckpt.name, step=_step_of(ckpt.name))
    try:
        sizes = _disk_sizes(ckpt)
    except FileNotFoundError:
        raise
    except OSError as exc:
        return msgspec.structs.replace(view, error=f"cannot list {ckpt.name}: {exc.strerror}")
    view = msgspec.structs.replace(view, size_bytes=sum(sizes.values()))
    try:
        meta = _read_meta(ckpt)
    except ValueError as exc:
        if not ckpt.exists():
            raise FileNotFoundError(ckpt) from None
        return msgspec.structs.replace(view, error=str(exc))
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
