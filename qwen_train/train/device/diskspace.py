"""A full disk ends the run in its own state, after the last durable checkpoint, with nothing partial left.

Two ways a disk fills under a run. Before: every checkpoint is checked
against the free space of the run dir's file system first (`ensure_room`,
from the Checkpointer, main process); a checkpoint that would not fit is
not started, and the run ends `failed_disk_full` (exitcodes.FAILED_DISK_FULL)
instead of dying half way through tens of gigabytes. During: another tenant
(or a larger write than planned) fills the disk under a write that had room
when it began: checkpoint, status.json, losses.jsonl, report.json or the
TensorBoard events. Each of those writers removes what it had half written
and raises DiskFull (qwen_train.disk); anything else that meets ENOSPC,
EDQUOT or EIO is recognised by its errno. Either way `end_disk_full` ends the
run: the write in flight has been waited for, no `.tmp-*` checkpoint is left,
status.json says `failed_disk_full` with the message if the disk lets it
(else it keeps its last good content, and the daemon reads the end from the
exit code and the log), and the message names the path, the bytes needed
and free, the newest durable checkpoint, and what to do.

The size of a checkpoint is measured, not guessed: the newest kept one's
files, or the tensors of the state about to be written (with the AdamW
moments the first step creates, when the optimizer has none yet), plus
torch.save's framing. A run starts only if its next checkpoint fits, and it
says at the start how many more the disk can hold against what its posture keeps.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import sys
from pathlib import Path
from typing import Any

import torch

from qwen_train import exitcodes
from qwen_train.atomic import atomic_write_bytes
from qwen_train.checkpoint_files import CKPT_DIR, list_checkpoints
from qwen_train.disk import DiskFull, FreeSpace, disk_writes, errno_words, free_space, size_text
from qwen_train.plan.disk import SLACK, framed, kept_bytes
from qwen_train.spec import Posture
from qwen_train.train.checkpointing.checkpoint import clean_temporaries
from qwen_train.train.heartbeat import Heartbeat

RESERVE_FILE = ".disk-reserve"
RESERVE_BYTES = 1 << 20  # a final status.json (its 200 events included) and the log's last lines


def tensor_bytes(value: Any) -> int:
    """Bytes of every tensor in a nested state (dicts, lists, tuples), each storage view counted as its size."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(tensor_bytes(v) for v in value)
    return 0


def checkpoint_estimate(state: dict[str, Any], model: torch.nn.Module) -> int:
    """What writing `state` takes on disk; before the first step, with the moments the step will create."""
    body = tensor_bytes(state)
    optimizer = state.get("optimizer")
    if isinstance(optimizer, dict) and not optimizer.get("state"):
        body += 2 * sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return framed(body)


def checkpoint_need(run_dir: Path, state: dict[str, Any], model: torch.nn.Module) -> int:
    """The larger of the estimate and the newest kept checkpoint's size (same state, same size)."""
    kept = list_checkpoints(run_dir)
    return max(checkpoint_estimate(state, model), kept_bytes(kept[-1]) + SLACK if kept else 0)


def ensure_room(run_dir: Path, step: int, state: dict[str, Any], model: torch.nn.Module) -> int:
    """Raise DiskFull before writing step `step`'s checkpoint when its file system has not the room; the need."""
    need = checkpoint_need(run_dir, state, model)
    where = run_dir / CKPT_DIR
    space = free_space(where)
    if space.free_bytes < need:
        raise DiskFull(f"the checkpoint of step {step}", where, need=need, free=space.free_bytes,
                       errno=errno.ENOSPC)
    return need


def announce_disk(heartbeat: Heartbeat, run_dir: Path, posture: Posture, step: int, need: int) -> None:
    """At the start: a checkpoint's size, what the posture keeps, and how many more fit; a warning if too few."""
    space = free_space(run_dir / CKPT_DIR)
    kept = min(len(list_checkpoints(run_dir)), posture.keep_last)
    fit = space.free_bytes // need if need else 0
    wanted = posture.keep_last + 1 - kept  # the kept set filled, plus the one being written
    text = (f"disk: a checkpoint takes about {size_text(need)}; the posture keeps {posture.keep_last} plus one being "
            f"written ({size_text((posture.keep_last + 1) * need)} at its peak); {space.checked} has "
            f"{size_text(space.free_bytes)} free of {size_text(space.total_bytes)}, room for {fit} more")
    if fit < wanted:
        text += (f": SHORT of the {wanted} more the posture needs: the run ends failed_disk_full when a checkpoint "
                 "no longer fits, unless space is freed or posture.keep_last lowered")
    heartbeat.event("disk", text, step)
    say(text)


def next_checkpoint(step: int, posture: Posture, max_steps: int) -> int:
    return min(max_steps, (step // posture.checkpoint_every + 1) * posture.checkpoint_every)


def say(text: str) -> None:
    """To the log, if it can take it: on a full disk the log (RUN_DIR/trainer.log) may be on it too."""
    with contextlib.suppress(OSError):
        print(f"qwen-train: {text}", file=sys.stderr, flush=True)


def _kept(run_dir: Path) -> str:
    try:
        kept = list_checkpoints(run_dir)
    except OSError:
        return "The run's checkpoints cannot be listed"
    if not kept:
        return "No durable checkpoint exists yet, so a resume starts from step 0"
    return f"The newest durable checkpoint, {kept[-1].name}, is intact: --resume continues from it"


def _advice(exc: DiskFull, posture: Posture, size: int | None, space: FreeSpace | None) -> str:
    if exc.errno == errno.EIO:
        return ("An I/O error can be a failing device rather than a full one: check it (dmesg, smartctl) and the "
                "free space before resuming.")
    peak = f": at its peak the run holds {posture.keep_last + 1} checkpoints of {size_text(size)}" if size else ""
    where = f" on {space.checked}'s file system" if space is not None else ""
    if exc.errno == errno.EDQUOT:  # the free space printed is the file system's, which this writer may not use
        return (f"A quota is full, not the disk: {_writer()} may use no more{where}, whatever it has free "
                f"(`quota -v` shows the limits). To go on: free that user's files there or have its quota raised "
                f"(setquota), keep fewer checkpoints (posture.keep_last is {posture.keep_last}{peak}), or move the "
                "run dir to another disk (--run-dir; under the daemon, its --runs-dir).")
    return (f"To go on: free space{where}, keep fewer checkpoints (posture.keep_last is {posture.keep_last}{peak}), "
            "or move the run dir to another disk (--run-dir; under the daemon, its --runs-dir); "
            "`qwen-train plan SPEC` prints what the run needs on disk.")


def _writer() -> str:
    uid = os.geteuid()
    try:
        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:  # a container's --user UID:GID names no user
        return f"uid {uid}"


def _what_happened(exc: DiskFull, space: FreeSpace | None) -> str:
    total = f" (of {size_text(space.total_bytes)})" if space is not None else ""
    if exc.need is not None and exc.free is not None:
        return f"disk full: {exc.describe()}{total}; it was not started, nothing was written for it"
    now = f"; {space.checked} now has {size_text(space.free_bytes)} free{total}" if space is not None else ""
    return (f"disk full: writing {exc.what} in {exc.path} failed: {errno_words(exc.errno)}{exc.detail}; what it "
            f"had half written was removed{now}")


class Reserve:
    """A small file the run holds from its start and lets go of when the disk is full, to say so in.

    A write that fails because the disk is full leaves no room for the status and the log line saying
    why; the reserve's RESERVE_BYTES are what they take. Held by the main process from the start check
    on, removed at every end of the run (by this process only: a reserve a killed run left is replaced).
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / RESERVE_FILE
        self.held = False

    def hold(self) -> None:
        with disk_writes("the run's reserve for its last words", self.path.parent):
            try:
                atomic_write_bytes(self.path, bytes(RESERVE_BYTES))
            except BaseException:
                self.path.unlink(missing_ok=True)
                raise
        self.held = True

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def end_disk_full(heartbeat: Heartbeat, run_dir: Path, posture: Posture, exc: BaseException,
                  reserve: Reserve | None = None) -> int:
    """End the run `failed_disk_full`: nothing partial left, the message in status.json (if it can) and the log.

    Called once nothing is in flight (the checkpointer's `close` has waited for its writer); the reserve
    goes first, so the status and the log line have room.
    """
    if not isinstance(exc, DiskFull):  # a write nobody named, met in a library: its errno says enough
        from qwen_train.disk import disk_errno

        exc = DiskFull("a file", run_dir, errno=disk_errno(exc), detail=f" ({type(exc).__name__}: {exc})")
    if reserve is not None:
        reserve.release()
    if heartbeat.enabled:
        with contextlib.suppress(OSError):
            clean_temporaries(run_dir)
    try:
        space: FreeSpace | None = free_space(run_dir)
    except OSError:
        space = None
    kept = list_checkpoints(run_dir) if (run_dir / CKPT_DIR).is_dir() else []
    size = exc.need or (kept_bytes(kept[-1]) if kept else None)
    message = f"{_what_happened(exc, space)}. {_kept(run_dir)}. {_advice(exc, posture, size, space)}"
    if heartbeat.enabled and not heartbeat.last_words("failed_disk_full", message, "disk_full"):
        good = heartbeat.written
        kept_status = f"{good.state} at step {good.step}" if good is not None else "none was written"
        message += f" (status.json could not be rewritten and keeps its last good content: {kept_status})"
    say(message)
    return exitcodes.FAILED_DISK_FULL

