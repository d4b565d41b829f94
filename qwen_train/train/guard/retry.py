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

from qwen_train import exitcodes
from qwen_train.status import Diagnosis, Event
from qwen_train.train.guard.diagnose import diagnose_batch, write_diagnosis
from qwen_train.train.session import Session
from qwen_train.train.step import StepOutcome


def _event(s: Session, outcome: StepOutcome) -> Event:
    step, cursor = s.progress.step, s.progress.last_step_cursor
    assert cursor is not None
    data = {"step": str(step + 1), "epoch": str(cursor.epoch), "position": str(cursor.position),
            "total": repr(outcome.losses.total), "talker": repr(outcome.losses.talker),
            "code_predictor": repr(outcome.losses.code_predictor), "grad_norm": repr(outcome.grad_norm)}
    return Event(time=time.time(), kind="non_finite", step=step + 1, data=data,
                 message=f"step {step + 1} not applied: " + "; ".join(outcome.problems))


def _diagnose(s: Session, outcome: StepOutcome) -> Diagnosis | None:
    if not s.spec.guard.diagnose:
        return None
    diagnosis = None
    for indices in s.progress.drawn:
        batch, mels, _rows = s.data.train.batch(indices)
        diagnosis = diagnose_batch(s, batch, mels, s.progress.step + 1, outcome.grad_norm, outcome.problems)
        if diagnosis.broken_parts or diagnosis.forward is not None:
            break
    return diagnosis


def handle_non_finite(s: Session, outcome: StepOutcome) -> int | None:
    """Return an exit code to end the run, or None after a rollback to carry on."""
    s.ckpt.wait()  # the checkpoint in flight is the one to roll back to
    p = s.progress
    event = _event(s, outcome)
    status = s.heartbeat.status
    s.heartbeat.update(non_finite_events=[*status.non_finite_events, event][-50:])
    s.heartbeat.event("non_finite", event.message, event.step)
    diagnosis = _diagnose(s, outcome)
    if diagnosis is not None:
        if s.is_main:
            write_diagnosis(s.run_dir, diagnosis)
        s.heartbeat.update(diagnosis=diagnosis)
    if p.retries >= s.spec.guard.max_retries:
        why = diagnosis.summary.splitlines()[1:3] if diagnosis else []
        message = f"non-finite at step {event.step} after {p.retries} retries: " + " | ".join(why or outcome.problems)
        s.heartbeat.update(state="failed_non_finite", message=message, retries=p.retries)
        return exitcodes.FAILED_NON_FINITE
    description = rollback(s)
    s.heartbeat.update(retries=p.retries, step=p.step, epoch=p.cursor.epoch)
    s.heartbeat.event("retry", description, p.step)
    return None


def rollback(s: Session) -> str:
    """Restore the last durable state (through the checkpointer); keep counting retries; skip the batch
    and scale the LR if asked."""
    p, guard = s.progress, s.spec.guard
    bad = p.last_step_cursor
    assert bad is not None
    retries, skip = p.retries + 1, set(p.skip)  # the restored position would forget both
    if guard.skip_batch:
        skip.add((bad.epoch, bad.position))
    target = s.ckpt.rollback()
    p.retries, p.skip = retries, skip
    parts = [f"retry {retries}/{guard.max_retries}: rolled back to {target} (step {p.step})"]
    if guard.skip_batch:
        parts.append(f"skipping batch {bad.position} of epoch {bad.epoch}")
    if guard.lr_factor < 1 and guard.lr_window > 0:
        p.lr_scale, p.lr_scale_until = guard.lr_factor, p.step + guard.lr_window
        for group in s.optimizer.param_groups:
            group["lr"] *= p.lr_scale
        parts.append(f"lr x{guard.lr_factor:g} until step {p.lr_scale_until}")
    return "; ".join(parts)
