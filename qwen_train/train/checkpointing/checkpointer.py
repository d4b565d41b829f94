"""The trainer's checkpoints behind one object: when to write, how, what to keep, and how to go back.

The loop asks two things of it: `load` once before the first step (continue
from the newest durable checkpoint, or start fresh) and `save(step)` after
every applied step. Whether that step is written is decided here
(`posture.checkpoint_every`), and so is everything around a write: the state
it captures (model with its speaker encoder, optimizer, schedule, scaler,
every rank's RNG, the training position), writing it in the background when
there is a writer (background.py: training stops only for a copy into host
memory) or synchronously (checkpoint.py: temp dir, fsync, hash, rename),
retention (the newest `posture.keep_last`, deleted only once a newer one is
durable; with listening scores on, also the best-scored one and those still
waiting for their scores, as qwen_train/scores/retention.py states, with what
gives way when the disk is short), and the status that names the newest
durable one. A checkpoint the disk has no room for is not started
(diskspace.ensure_room raises DiskFull) once no checkpoint waiting for its
scores is left to let go. `save(step,
final=True)` ends a run (completed or stopped): synchronous, after any write
in flight, and only if that step has no checkpoint yet. The retry policy goes
back through `rollback`, the diagnose replay through `apply`.

Every check of a resume happens before anything is restored or rewritten, so
a refused resume leaves the run directory as it was (status.json aside, which
says why); the losses log is cut back to the checkpoint's step only once the
checkpoint has been accepted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object

from qwen_train.disk import DiskFull
from qwen_train.modeldir import load_base_model
from qwen_train.scores.retention import protected, release_one
from qwen_train.spec import Posture, RunSpec, encode_spec
from qwen_train.status import CheckpointRef
from qwen_train.train.checkpointing.background import BackgroundCheckpointer
from qwen_train.train.checkpointing.checkpoint import (
    CheckpointError,
    CheckpointMeta,
    clean_temporaries,
    list_checkpoints,
    load_state,
    prune,
    save_checkpoint,
    verify_checkpoint,
)
from qwen_train.train.checkpointing.losslog import truncate_losses
from qwen_train.train.checkpointing.rng import restore_rng, rng_state, seed_everything
from qwen_train.train.data.cursor import reset_epoch, validate_cursor
from qwen_train.train.device.diskspace import ensure_room
from qwen_train.train.guard.faults import pause
from qwen_train.train.heartbeat import Heartbeat
from qwen_train.train.objective import unwrap
from qwen_train.train.progress import Progress
from qwen_train.train.recipes.adapter import (
    AdapterError,
    adapter_mismatch,
    base_mismatch,
    load_model_state,
    model_state,
)
from qwen_train.train.recipes.recipe import recipe_mismatch


@dataclass(frozen=True)
class Live:
    """The live objects a checkpoint captures and restores: the very ones the session trains with."""

    accelerator: Accelerator
    objective: torch.nn.Module  # the accelerate-wrapped Objective
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    progress: Progress

    @property
    def model(self) -> torch.nn.Module:
        return unwrap(self.accelerator, self.objective).model


@dataclass(frozen=True)
class Origin:
    """What every checkpoint records of where it came from, and what a resume must still match."""

    spec: RunSpec
    bundle: Path
    fingerprint: str
    # The code this run trains with, read once (a git call per checkpoint would be waste): the
    # provenance an export and the gate carry forward. "" on ranks that never write.
    code_revision: str
    base_digest: str = ""  # an adapter run's base weights (adapter.base_digest), which its checkpoints omit


class Checkpointer:
    """`load` once, `save(step)` after every step; `rollback` and `apply` for going back."""

    def __init__(self, run_dir: Path, posture: Posture, live: Live, origin: Origin, heartbeat: Heartbeat,
                 writer: BackgroundCheckpointer | None = None) -> None:
        self.run_dir = run_dir
        self.posture = posture
        self.live = live
        self.origin = origin
        self.heartbeat = heartbeat
        self.writer = writer  # the background writer (main process only), None: every write synchronous
        self.resumed_from: Path | None = None  # kept by retention while it is the newest
        self._spec_json = encode_spec(origin.spec).decode()
        self._initial_schedule = live.scheduler.state_dict()  # for a rollback to the base weights
        # An adapter run's rollback to the base restores its freshly initialised adapter (small: adapters only).
        self._initial_adapter = None if origin.spec.train.adapter is None else {
            k: v.clone() for k, v in model_state(live.model, origin.spec).items()}

    @property
    def is_main(self) -> bool:
        return bool(self.live.accelerator.is_main_process)

    # The loop's calls.

    def load(self, resume: bool, reset_cursor: bool = False) -> None:
        """Before the first step: continue from the newest durable checkpoint if asked, and clear what a kill left.

        Raises CheckpointError / CursorRejected naming what is wrong, with nothing restored.
        """
        if resume or reset_cursor:
            self._resume(reset_cursor)
        if self.is_main:
            clean_temporaries(self.run_dir)

    def save(self, step: int, final: bool = False) -> None:
        """After every applied step: write when the posture says so; `final` at a run's end or stop."""
        if final:
            self.wait()
            if step % self.posture.checkpoint_every != 0:  # else this step's scheduled one is it
                self._checkpoint(background=False)
            return
        self._collect(wait=False)
        self.reserve()
        if step % self.posture.checkpoint_every == 0:
            self.wait()  # one write at a time, and in step order
            self._checkpoint(background=True)

    def wait(self) -> None:
        """Block until the write in flight (if any) is durable, and do its bookkeeping."""
        self._collect(wait=True)

    def close(self) -> None:
        """On the way out, even after a failure: a snapshot taken before it is still worth keeping."""
        if self.writer is not None and self.writer.busy:
            self.writer.wait()

    # Writing.

    def reserve(self) -> None:
        """Once the optimizer state exists, pin the background writer's buffers (in the background)."""
        if self.writer is None or self.writer.reserved or not self.is_main:
            return
        self.writer.reserve({"model": model_state(self.live.model, self.origin.spec),
                             "optimizer": self.live.optimizer.state_dict()})

    def write(self, background: bool = False, state: dict[str, Any] | None = None) -> Path | None:
        """One checkpoint of the state now: every rank contributes its RNG state, the main process writes.

        Returns the durable path on main, or None when the write went to the background (collected by
        `save`/`wait` once durable) or on other ranks. No retention or status here: `save` does those.
        """
        state = self.state() if state is None else state
        path = None
        if self.is_main:
            progress = self.live.progress
            meta = {"cursor": progress.cursor, "spec": self._spec_json, "bundle_fingerprint": self.origin.fingerprint,
                    "micro_steps": progress.micro_steps, "code_revision": self.origin.code_revision,
                    "base_model_digest": self.origin.base_digest}
            if background and self.writer is not None:
                self.writer.submit(self.run_dir, progress.step, state, meta)
            else:
                path = save_checkpoint(self.run_dir, progress.step, state, meta)
        self.live.accelerator.wait_for_everyone()
        return path

    def state(self) -> dict[str, Any]:
        """Model (speaker encoder included; an adapter run's adapter only), optimizer, scheduler, scaler, every
        rank's RNG, the position."""
        live = self.live
        scaler = live.accelerator.scaler
        return {
            "model": model_state(live.model, self.origin.spec),
            "optimizer": live.optimizer.state_dict(),
            "scheduler": live.scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": gather_object([rng_state()]) if live.accelerator.num_processes > 1 else [rng_state()],
            **live.progress.state_dict(),
        }

    def _checkpoint(self, background: bool) -> None:
        state = self.state()
        if self.is_main:  # one the disk cannot take is not started: the run ends failed_disk_full (diskspace.py)
            self._room(state)
        self.heartbeat.state("checkpointing")
        path = self.write(background=background, state=state)
        if path is not None:
            self._durable(path)
        self.heartbeat.state("training")

    def _room(self, state: dict[str, Any]) -> None:
        """Room for the next checkpoint: checkpoints kept only while they wait for their scores are let go,
        oldest first, before the run would end disk full (qwen_train/scores/retention.py)."""
        step = self.live.progress.step
        while True:
            try:
                ensure_room(self.run_dir, step, state, self.live.model)
                return
            except DiskFull:
                released = release_one(self.run_dir, self.posture, self.origin.spec.scores, spare=self.resumed_from)
                if released is None:
                    raise
                self.heartbeat.event("retention", f"deleted {released.name} before it was scored: the disk has no "
                                     f"room for the checkpoint of step {step} beside it", step)

    def _collect(self, wait: bool) -> None:
        """A finished background write (or, with `wait`, the one in flight) gets its bookkeeping."""
        if self.writer is None:
            return
        path = self.writer.wait() if wait else self.writer.poll()
        if path is not None:
            self._durable(path)

    def _durable(self, path: Path) -> None:
        """Once a checkpoint is durable: retention, then the status that names it."""
        step = int(path.name.split("-")[1])
        pause("checkpoint-before-prune", step)
        keep = protected(self.run_dir, self.posture, self.origin.spec.scores)  # the best-scored, those waiting
        prune(self.run_dir, self.posture.keep_last, protect=self.resumed_from, keep=keep)
        ref = CheckpointRef(step=step, path=str(path), written_at=time.time())
        self.heartbeat.update(last_checkpoint=ref)
        self.heartbeat.event("checkpoint", f"durable checkpoint {path.name}", step)

    # Going back.

    def apply(self, ckpt: Path, meta: CheckpointMeta) -> None:
        """Load a verified checkpoint into the live objects (resume, rollback and the replay share this)."""
        live = self.live
        state = load_state(ckpt)
        try:
            load_model_state(live.model, state["model"], self.origin.spec)
        except AdapterError as exc:
            raise CheckpointError(f"{ckpt.name}: {exc}") from None
        self._weights_changed()
        live.optimizer.load_state_dict(state["optimizer"])
        live.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler") is not None and live.accelerator.scaler is not None:
            live.accelerator.scaler.load_state_dict(state["scaler"])
        rngs = state["rng"]
        restore_rng(rngs[min(live.accelerator.process_index, len(rngs) - 1)])
        live.progress.load_state_dict(state, meta.cursor)

    def rollback(self) -> str:
        """Back to the newest durable checkpoint, or to the base weights if there is none; says which."""
        self.wait()  # the checkpoint in flight is the one to roll back to
        ckpt = self.newest()
        if ckpt is not None:
            self.apply(ckpt, verify_checkpoint(ckpt))
            target = ckpt.name
        else:
            self._reset_to_base()
            target = "the base weights (no durable checkpoint yet)"
        if self.is_main:
            truncate_losses(self.run_dir, self.live.progress.step)
        return target

    def newest(self) -> Path | None:
        ckpts = list_checkpoints(self.run_dir)
        return ckpts[-1] if ckpts else None

    def _resume(self, reset_cursor: bool) -> None:
        """Continue from the newest durable checkpoint, or start at step 0 if there is none."""
        progress, heartbeat = self.live.progress, self.heartbeat
        ckpt = self.newest()
        if ckpt is None:
            if self.is_main:
                truncate_losses(self.run_dir, 0)
            heartbeat.event("resume", "no checkpoint yet; starting from step 0")
            return
        meta = self._check(ckpt, reset_cursor)
        self.apply(ckpt, meta)
        self.resumed_from = ckpt
        if reset_cursor:
            progress.cursor = reset_epoch(meta.cursor, progress.cursor)
            heartbeat.event("cursor_reset", f"--reset-cursor: epoch {progress.cursor.epoch} restarts from its first "
                            "batch", progress.step)
            verdict = f"reset: epoch {progress.cursor.epoch} from batch 0 (asked with --reset-cursor)"
        else:
            cursor = progress.cursor
            verdict = (f"ok: {ckpt.name} at epoch {cursor.epoch} batch {cursor.position}/"
                       f"{cursor.batches_per_epoch}, bundle fingerprint matches")
        if self.is_main:
            truncate_losses(self.run_dir, progress.step)
        heartbeat.update(cursor_check=verdict, step=progress.step, epoch=progress.cursor.epoch)
        heartbeat.event("resume", f"resumed from {ckpt.name} at step {progress.step}", progress.step)

    def _check(self, ckpt: Path, reset_cursor: bool) -> CheckpointMeta:
        """Verify files and cursor; raise CheckpointError / CursorRejected naming the problem."""
        meta = verify_checkpoint(ckpt)
        origin = self.origin
        mismatch = recipe_mismatch(ckpt.name, meta.spec, origin.spec)
        mismatch = mismatch or adapter_mismatch(ckpt.name, meta.spec, origin.spec)
        if mismatch is None and origin.spec.train.adapter is not None:
            mismatch = base_mismatch(ckpt.name, meta.base_model_digest, Path(origin.spec.model))
        if mismatch is not None:  # even with --reset-cursor: the weights themselves are in the other dtypes
            raise CheckpointError(mismatch)
        if reset_cursor:
            if meta.bundle_fingerprint != origin.fingerprint:
                # Weights may be reused on new data, but only when asked; say so loudly.
                self.heartbeat.event("cursor_reset",
                                     f"bundle content differs from {ckpt.name}'s; weights reused as asked")
            return meta
        validate_cursor(meta.cursor, self.live.progress.cursor, meta.bundle_fingerprint, origin.fingerprint,
                        str(origin.bundle))
        return meta

    def _reset_to_base(self) -> None:
        """Step 0 again: base weights, empty optimizer state, the initial schedule, seeded RNG."""
        live, spec = self.live, self.origin.spec
        if self._initial_adapter is not None:  # the frozen base never moved: only the adapter goes back
            load_model_state(live.model, self._initial_adapter, spec)
        else:
            base, _processor = load_base_model(spec.model, spec.language)
            live.model.load_state_dict(base.state_dict())
        self._weights_changed()
        inner = getattr(live.optimizer, "optimizer", live.optimizer)  # accelerate's wrapper, or the bare one
        inner.state.clear()
        live.scheduler.load_state_dict(self._initial_schedule)
        for group, lr in zip(live.optimizer.param_groups, live.scheduler.get_last_lr(), strict=True):
            group["lr"] = lr
        seed_everything(spec.train.seed, spec.train.deterministic)
        progress = live.progress
        progress.cursor = msgspec.structs.replace(progress.cursor, epoch=0, position=0)
        progress.step = progress.micro_steps = 0
        progress.evals = []

    def _weights_changed(self) -> None:
        """Weights were loaded: cached x-vectors may no longer hold."""
        unwrap(self.live.accelerator, self.live.objective).speakers.clear()
