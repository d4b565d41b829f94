"""Resume: find the newest durable checkpoint, check it still fits, restore it.

Every check happens before anything is restored or rewritten, so a refused
resume leaves the run directory exactly as it was (status.json aside, which
says why). The losses log is cut back to the checkpoint's step only after the
checkpoint has been accepted.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from qwen_train.atomic import atomic_write_bytes
from qwen_train.train.checkpoint import (
    CheckpointError,
    CheckpointMeta,
    list_checkpoints,
    load_state,
    restore_rng,
    verify_checkpoint,
)
from qwen_train.train.cursor import CursorRejected, reset_epoch, validate_cursor
from qwen_train.train.session import Session

LOSSES_FILE = "losses.jsonl"


def newest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def check_resume(s: Session, ckpt: Path, reset_cursor: bool) -> CheckpointMeta:
    """Verify files and cursor; raise CheckpointError / CursorRejected naming the problem."""
    meta = verify_checkpoint(ckpt)
    if reset_cursor:
        if meta.bundle_fingerprint != s.fingerprint:
            # Weights may be reused on new data, but only when asked; say so loudly.
            s.heartbeat.event("cursor_reset", f"bundle content differs from {ckpt.name}'s; weights reused as asked")
        return meta
    validate_cursor(meta.cursor, s.cursor, meta.bundle_fingerprint, s.fingerprint, str(s.bundle))
    return meta


def restore(s: Session, reset_cursor: bool = False) -> None:
    """Continue from the newest durable checkpoint, or start at step 0 if there is none."""
    ckpt = newest_checkpoint(s.run_dir)
    if ckpt is None:
        if s.is_main:
            truncate_losses(s.run_dir, 0)
        s.heartbeat.event("resume", "no checkpoint yet; starting from step 0")
        return
    meta = check_resume(s, ckpt, reset_cursor)
    apply_checkpoint(s, ckpt, meta)
    s.resumed_from = ckpt
    if reset_cursor:
        s.cursor = reset_epoch(meta.cursor, s.cursor)
        s.heartbeat.event("cursor_reset", f"--reset-cursor: epoch {s.cursor.epoch} restarts from its first batch",
                          s.step)
        verdict = f"reset: epoch {s.cursor.epoch} from batch 0 (asked with --reset-cursor)"
    else:
        s.cursor = meta.cursor
        verdict = (f"ok: {ckpt.name} at epoch {s.cursor.epoch} batch {s.cursor.position}/"
                   f"{s.cursor.batches_per_epoch}, bundle fingerprint matches")
    if s.is_main:
        truncate_losses(s.run_dir, s.step)
    s.heartbeat.update(cursor_check=verdict, step=s.step, epoch=s.cursor.epoch)
    s.heartbeat.event("resume", f"resumed from {ckpt.name} at step {s.step}", s.step)


def apply_checkpoint(s: Session, ckpt: Path, meta: CheckpointMeta) -> None:
    """Load a verified checkpoint into the live session (resume and rollback share this)."""
    state = load_state(ckpt)
    s.model.load_state_dict(state["model"])
    s.weights_changed()
    s.optimizer.load_state_dict(state["optimizer"])
    s.scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler") is not None and s.accelerator.scaler is not None:
        s.accelerator.scaler.load_state_dict(state["scaler"])
    rngs = state["rng"]
    restore_rng(rngs[min(s.accelerator.process_index, len(rngs) - 1)])
    s.step = int(state["step"])
    s.micro_steps = int(state["micro_steps"])
    s.evals = list(state["evals"])
    s.cursor = meta.cursor
    guard = state.get("guard", {})
    s.skip = {(int(e), int(p)) for e, p in guard.get("skip", [])}
    s.lr_scale = float(guard.get("lr_scale", 1.0))
    s.lr_scale_until = int(guard.get("lr_scale_until", 0))
    s.retries = int(guard.get("retries", 0))


def truncate_losses(run_dir: Path, step: int) -> None:
    """Drop loss lines past the checkpoint: those steps are about to be trained again."""
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
    """A line cut short by a kill is dropped, not fatal."""
    try:
        return int(msgspec.json.decode(line)["step"])
    except (msgspec.DecodeError, KeyError, TypeError, ValueError):
        return None


__all__ = ["CheckpointError", "CursorRejected", "LOSSES_FILE", "restore", "truncate_losses"]
