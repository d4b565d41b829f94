"""A checkpoint on disk, as a contract: its directory layout, its manifest and the data cursor it holds.

Torch-free, like spec.py and status.py: the trainer writes and verifies
checkpoints (qwen_train.train.checkpointing.checkpoint, which needs torch for the state),
while the daemon and the dashboard only read what is kept, where, and at
which cursor, and must not import torch to do so (a host install has none).
One definition serves both, so the reader cannot drift from the writer.

Layout: RUN_DIR/checkpoints/step-NNNNNNNN/{meta.json,state.pt}; a save in
progress (or one a crash left) is `.tmp-step-N`, never listed as durable.
meta.json is read through `safe_read` (the daemon reads it too, and a run dir
is writable from inside the trainer's container): a FIFO, a symlink or an
oversized file is a CheckpointError naming it, never a hang.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from qwen_train.safe_read import MiB, UnsafeFile, decode_json, read_regular

CKPT_DIR = "checkpoints"
STATE_FILE = "state.pt"
META_FILE = "meta.json"
PREFIX = "step-"
META_LIMIT = 4 * MiB  # the run spec, a cursor and a file list: a few KiB


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be trusted; the message names it and what is wrong."""


class Cursor(msgspec.Struct, frozen=True):
    """Where the run is in the data: the next batch to draw (qwen_train.train.data.cursor says how it moves)."""

    epoch: int
    position: int
    seed: int
    batch_size: int
    world_size: int
    rows: int
    bucket: int = 0
    # A frame-budget plan (train.frame_budget; qwen_train.train.data.budget): the budget, the pad multiple its widths
    # are rounded to, and its global batches per epoch, fixed by the rows' lengths whatever the epoch's order.
    # batch_size is 0 then (rows per batch vary). All 0 in a fixed-row cursor and in one written before budgets.
    frame_budget: int = 0
    pad_multiple: int = 0
    global_batches: int = 0
    # For a plan that reads the rows' lengths (bucket or budget): its rule and a digest of the lengths
    # (qwen_train.train.data.lengths), so a resume over rows that measure differently is refused. "" otherwise.
    plan: str = ""

    @property
    def batches_per_epoch(self) -> int:
        if self.frame_budget > 0:
            return self.global_batches
        return batches_per_epoch(self.rows, self.batch_size * self.world_size)


def batches_per_epoch(rows: int, global_batch: int) -> int:
    """Whole global batches per epoch: the last partial one is dropped."""
    return rows // global_batch if global_batch > 0 else 0


class FileEntry(msgspec.Struct, frozen=True):
    size: int
    sha256: str


class CheckpointMeta(msgspec.Struct, frozen=True):
    step: int
    cursor: Cursor
    spec: str
    bundle_fingerprint: str
    created_at: float
    files: dict[str, FileEntry]
    micro_steps: int = 0
    # the code the trainer ran (git commit, else package version; qwen_train.revision.code_revision);
    # "" in a checkpoint written before revisions were recorded
    code_revision: str = ""
    # an adapter run's checkpoint holds no base weights: the digest of the base model's files it applies to
    # (qwen_train.train.recipes.adapter.base_digest); "" for a full fine-tune
    base_model_digest: str = ""


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def step_of(name: str) -> int | None:
    """The step a checkpoint dir's name gives (None for a name that is not one)."""
    digits = name[len(PREFIX):] if name.startswith(PREFIX) else ""
    return int(digits) if digits.isdigit() else None


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Completed checkpoints, oldest first (zero-padded steps sort by name; temp dirs are never listed).

    A checkpoints path that cannot be listed (unreadable, or a file) raises OSError: a run whose
    checkpoints cannot be seen must not look like a run that has none. A symlink named like a
    checkpoint is not one the trainer wrote (it renames real directories into place), so it is
    not listed: a resume never follows it out of the run dir, and retention never deletes through it.
    """
    root = run_dir / CKPT_DIR
    if not root.exists():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith(PREFIX) and p.is_dir() and not p.is_symlink())


def read_meta(ckpt: Path) -> CheckpointMeta:
    try:
        raw = read_regular(ckpt / META_FILE, META_LIMIT, what=META_FILE, nofollow=True)
    except UnsafeFile as exc:
        raise CheckpointError(f"checkpoint {ckpt}: {exc}") from None
    except OSError as exc:
        raise CheckpointError(f"checkpoint {ckpt}: cannot read {META_FILE} ({exc.strerror})") from None
    try:
        return decode_json(raw, CheckpointMeta, META_FILE)
    except ValueError as exc:  # decode_json's message starts with the file's name
        raise CheckpointError(f"checkpoint {ckpt}: malformed {exc}") from None


def pick_checkpoint(run_dir: Path, step: int | None, kept: list[Path]) -> Path:
    """From `kept` (list_checkpoints), the newest, or the one at `step`; CheckpointError naming the kept steps.

    `kept` must not be empty: what to say about a run with none differs by caller.
    """
    if step is None:
        return kept[-1]
    wanted = run_dir / CKPT_DIR / checkpoint_name(step)
    if wanted not in kept:
        steps = ", ".join(str(step_of(c.name)) for c in kept)
        raise CheckpointError(f"{run_dir} has no checkpoint at step {step}; kept steps: {steps}")
    return wanted
