"""`qwen-train diagnose RUN [--step N]`: replay deterministically to step N and diagnose it.

Resume is exact, so the state at step N is recomputed from the nearest
durable checkpoint before it: load it, train forward to step N-1 (same
batches, same RNG), draw step N's batch and run the diagnosis on it. The run's
status.json is not touched; diagnosis.json and diagnosis.txt are rewritten.
"""

from __future__ import annotations

from pathlib import Path

from qwen_train.spec import decode_spec
from qwen_train.status import Diagnosis, StatusError, read_status
from qwen_train.train.checkpointing.checkpoint import CheckpointError, list_checkpoints, verify_checkpoint
from qwen_train.train.guard.diagnose import diagnose_batch, write_diagnosis
from qwen_train.train.heartbeat import Heartbeat
from qwen_train.train.session import build_session


class DiagnoseError(RuntimeError):
    """The replay cannot be set up; the message says what is missing."""


def _default_step(run_dir: Path) -> int:
    try:
        status = read_status(run_dir / "status.json")
    except StatusError as exc:
        raise DiagnoseError(f"{exc}; pass --step N") from None
    if not status.non_finite_events or status.non_finite_events[-1].step is None:
        raise DiagnoseError(f"{run_dir}: no non-finite event recorded; pass --step N to replay a step")
    return int(status.non_finite_events[-1].step)


def _checkpoint_before(run_dir: Path, step: int) -> Path:
    ckpts = [c for c in list_checkpoints(run_dir) if int(c.name.split("-")[1]) < step]
    if not ckpts:
        raise DiagnoseError(f"{run_dir}: no durable checkpoint before step {step} to replay from")
    return ckpts[-1]


def diagnose_run(run_dir: Path, step: int | None = None) -> Diagnosis:
    from qwen_train.train.step import train_step

    target = step if step is not None else _default_step(run_dir)
    ckpt = _checkpoint_before(run_dir, target)
    try:
        meta = verify_checkpoint(ckpt)
    except CheckpointError as exc:
        raise DiagnoseError(str(exc)) from None
    spec = decode_spec(meta.spec, source=f"{ckpt}/meta.json")
    heartbeat = Heartbeat(run_dir, spec.name, "diagnose", spec.train.max_steps)
    heartbeat.enabled = False  # the replay must not overwrite the run's heartbeat, from its first phase on
    session = build_session(spec, run_dir, heartbeat)
    if meta.cursor.world_size != session.accelerator.num_processes:
        # One process would draw only rank 0's share of each global batch and average half the gradient:
        # not the step that broke, so not a diagnosis of it.
        raise DiagnoseError(f"{ckpt.name} was written by a {meta.cursor.world_size}-process run and this replay "
                            f"runs {session.accelerator.num_processes}: an exact replay needs the same processes; "
                            "replaying a several-process run is not supported yet (its own diagnosis.json, "
                            "written when the step broke, covers rank 0's share of the batch)")
    session.ckpt.apply(ckpt, meta)
    p = session.progress
    while p.step < target - 1:
        outcome = train_step(session)
        if outcome.problems:
            raise DiagnoseError(f"replay hit a non-finite step {p.step + 1} before step {target}: "
                                + "; ".join(outcome.problems) + f". Diagnose step {p.step + 1} instead.")
    outcome = train_step(session)
    problems = outcome.problems or [f"step {target} replayed finite (loss {outcome.losses.total:.4g})"]
    batch, mels, _rows = session.data.train.batch(p.drawn[0])
    diagnosis = diagnose_batch(session, batch, mels, target, outcome.grad_norm, problems)
    write_diagnosis(run_dir, diagnosis)
    return diagnosis
