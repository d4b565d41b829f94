"""What happens after the guard refuses a step: record, diagnose, roll back or give up.

A run never continues on a non-finite state: the step is not applied, the
event is recorded with its numbers, the offending batch is diagnosed, and the
run rolls back to its last durable checkpoint (or to the base weights if none
exists yet), optionally skipping the batch and lowering the learning rate for
a window. After `guard.max_retries` retries it ends `failed_non_finite`, with
the diagnosis attached and the last durable checkpoint untouched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import msgspec

from qwen_train import exitcodes
from qwen_train.modeldir import load_base_model
from qwen_train.status import Diagnosis, Event, Losses
from qwen_train.train.checkpoint import verify_checkpoint
from qwen_train.train.diagnose import diagnose_batch, write_diagnosis
from qwen_train.train.resume import apply_checkpoint, newest_checkpoint, truncate_losses
from qwen_train.train.session import Session, finish_background, seed_everything


@dataclass(frozen=True)
class StepOutcome:
    losses: Losses
    grad_norm: float
    frames: int
    problems: list[str]


def _event(s: Session, outcome: StepOutcome) -> Event:
    cursor = s.last_step_cursor
    assert cursor is not None
    data = {"step": str(s.step + 1), "epoch": str(cursor.epoch), "position": str(cursor.position),
            "total": repr(outcome.losses.total), "talker": repr(outcome.losses.talker),
            "code_predictor": repr(outcome.losses.code_predictor), "grad_norm": repr(outcome.grad_norm)}
    return Event(time=time.time(), kind="non_finite", step=s.step + 1, data=data,
                 message=f"step {s.step + 1} not applied: " + "; ".join(outcome.problems))


def _diagnose(s: Session, outcome: StepOutcome) -> Diagnosis | None:
    if not s.spec.guard.diagnose:
        return None
    diagnosis = None
    for indices in s.drawn:
        batch, mels, _rows = s.train_data.batch(indices)
        diagnosis = diagnose_batch(s, batch, mels, s.step + 1, outcome.grad_norm, outcome.problems)
        if diagnosis.broken_parts or diagnosis.forward is not None:
            break
    return diagnosis


def handle_non_finite(s: Session, outcome: StepOutcome) -> int | None:
    """Return an exit code to end the run, or None after a rollback to carry on."""
    finish_background(s, wait=True)  # the checkpoint in flight is the one to roll back to
    event = _event(s, outcome)
    status = s.heartbeat.status
    s.heartbeat.update(non_finite_events=[*status.non_finite_events, event][-50:])
    s.heartbeat.event("non_finite", event.message, event.step)
    diagnosis = _diagnose(s, outcome)
    if diagnosis is not None:
        if s.is_main:
            write_diagnosis(s.run_dir, diagnosis)
        s.heartbeat.update(diagnosis=diagnosis)
    if s.retries >= s.spec.guard.max_retries:
        why = diagnosis.summary.splitlines()[1:3] if diagnosis else []
        message = f"non-finite at step {event.step} after {s.retries} retries: " + " | ".join(why or outcome.problems)
        s.heartbeat.update(state="failed_non_finite", message=message, retries=s.retries)
        return exitcodes.FAILED_NON_FINITE
    description = rollback(s)
    s.heartbeat.update(retries=s.retries, step=s.step, epoch=s.cursor.epoch)
    s.heartbeat.event("retry", description, s.step)
    return None


def rollback(s: Session) -> str:
    """Restore the last durable state; keep counting retries; skip the batch and scale the LR if asked."""
    bad = s.last_step_cursor
    assert bad is not None
    retries, skip = s.retries + 1, set(s.skip)
    if s.spec.guard.skip_batch:
        skip.add((bad.epoch, bad.position))
    ckpt = newest_checkpoint(s.run_dir)
    if ckpt is not None:
        apply_checkpoint(s, ckpt, verify_checkpoint(ckpt))
        target = ckpt.name
    else:
        reset_to_base(s)
        target = "the base weights (no durable checkpoint yet)"
    s.retries, s.skip = retries, skip
    parts = [f"retry {retries}/{s.spec.guard.max_retries}: rolled back to {target} (step {s.step})"]
    if s.spec.guard.skip_batch:
        parts.append(f"skipping batch {bad.position} of epoch {bad.epoch}")
    guard = s.spec.guard
    if guard.lr_factor < 1 and guard.lr_window > 0:
        s.lr_scale, s.lr_scale_until = guard.lr_factor, s.step + guard.lr_window
        for group in s.optimizer.param_groups:
            group["lr"] *= s.lr_scale
        parts.append(f"lr x{guard.lr_factor:g} until step {s.lr_scale_until}")
    if s.is_main:
        truncate_losses(s.run_dir, s.step)
    return "; ".join(parts)


def reset_to_base(s: Session) -> None:
    """Step 0 again: base weights, empty optimizer state, the initial schedule, seeded RNG."""
    base, _processor = load_base_model(s.spec.model, s.spec.language)
    s.model.load_state_dict(base.state_dict())
    s.weights_changed()
    inner = getattr(s.optimizer, "optimizer", s.optimizer)
    inner.state.clear()
    s.scheduler.load_state_dict(s.initial_scheduler)
    for group, lr in zip(s.optimizer.param_groups, s.scheduler.get_last_lr(), strict=True):
        group["lr"] = lr
    seed_everything(s.spec.train.seed, s.spec.train.deterministic)
    s.cursor = msgspec.structs.replace(s.cursor, epoch=0, position=0)
    s.step = s.micro_steps = 0
    s.evals = []
