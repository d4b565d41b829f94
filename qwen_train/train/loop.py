"""The train loop: draw the batch at the cursor, step, heartbeat, eval, checkpoint.

Stopping is cooperative: SIGTERM/SIGINT set a flag, the current optimizer
step finishes, a durable checkpoint is written, and the process exits with
`exitcodes.STOPPED` so the daemon records `stopped`, not `failed`.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import msgspec
import torch

from qwen_train import exitcodes
from qwen_train.atomic import atomic_write_bytes
from qwen_train.spec import RunSpec
from qwen_train.status import Losses, Throughput
from qwen_train.train import ranks
from qwen_train.train.checkpoint import CheckpointError, clean_temporaries, list_checkpoints
from qwen_train.train.cursor import CursorRejected, advance, batch_indices
from qwen_train.train.evaluate import evaluate
from qwen_train.train.heartbeat import Heartbeat
from qwen_train.train.nonfinite import step_problems
from qwen_train.train.resume import LOSSES_FILE, restore
from qwen_train.train.retry import StepOutcome, handle_non_finite
from qwen_train.train.session import (
    Session,
    build_session,
    checkpoint_done,
    finish_background,
    reserve_background,
    write_checkpoint,
)

REPORT_FILE = "report.json"


class StopFlag:
    """Set by SIGTERM/SIGINT; checked between optimizer steps."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        self.signal_name = signal.Signals(signum).name


def _next_cursor(s: Session) -> None:
    """Move past batches the guard has marked to skip."""
    while (s.cursor.epoch, s.cursor.position) in s.skip:
        s.cursor = advance(s.cursor)


def train_step(s: Session) -> StepOutcome:
    """Accumulate `grad_accum` micro-batches, then apply the step only if the guard allows.

    The loss parts and the gradient norm come to the host in one sync, which
    logging needs anyway; a refused step leaves weights, optimizer and
    scheduler untouched. With a prefetcher the batch was prepared by a worker
    (pinned, so the copy to the GPU overlaps); it is the same batch either way.
    """
    if s.injector is not None:
        s.injector.begin_step(s.step + 1)
    accum = s.spec.train.grad_accum
    frames, totals, s.drawn = 0, torch.zeros(3, device=s.device), []
    _next_cursor(s)
    s.last_step_cursor = s.cursor
    for micro in range(accum):
        _next_cursor(s)
        indices = batch_indices(s.cursor, s.accelerator.process_index, s.lengths)
        s.drawn.append(indices)
        if s.prefetcher is not None:
            batch, mels = s.prefetcher.get(s.cursor, indices, s.skip)
        else:
            batch, mels, _rows = s.train_data.batch(indices)
        frames += int(batch["cp_mask"].sum())
        ref_ids = batch.pop("ref_index", None)
        refs = ref_ids.tolist() if ref_ids is not None else None
        ahead = s.device.type == "cuda"
        batch = {k: v.to(s.device, non_blocking=ahead) for k, v in batch.items()}
        if ahead:
            mels = [m.to(s.device, non_blocking=True) for m in mels]
        sync = contextlib.nullcontext() if micro == accum - 1 else s.accelerator.no_sync(s.objective)
        with sync, s.accelerator.autocast():
            values = s.objective(batch, mels, refs)
            s.accelerator.backward(values[0] / accum)
        totals = totals + values.detach().float() / accum
        s.cursor = advance(s.cursor)
        s.micro_steps += 1
    grad_norm = s.accelerator.clip_grad_norm_(s.objective.parameters(), s.spec.train.max_grad_norm)
    asked = 1.0 if s.stop_asked is not None and s.stop_asked() else 0.0
    packed = torch.cat([totals, torch.as_tensor(grad_norm, device=s.device).float().reshape(1),
                        torch.tensor([asked], device=s.device)])
    if s.accelerator.num_processes > 1:
        # The global batch's loss, not one rank's; and whether any rank was asked to stop: a signal
        # reaches the ranks at different moments, and a rank that stopped alone would hang the others.
        packed = s.accelerator.reduce(packed, reduction="mean")
    total, talker, cp, norm, anyone = packed.tolist()
    s.stop_agreed = anyone > 0
    losses = Losses(total=total, talker=talker, code_predictor=cp)
    problems = step_problems({"total": total, "talker": talker, "code_predictor": cp}, norm, s.spec.guard)
    if problems:
        s.optimizer.zero_grad(set_to_none=True)
        return StepOutcome(losses, norm, frames, problems)
    s.optimizer.step()
    s.optimizer.zero_grad(set_to_none=True)
    s.scheduler.step()
    s.step += 1
    if s.step < s.lr_scale_until:
        for group in s.optimizer.param_groups:
            group["lr"] *= s.lr_scale
    return StepOutcome(losses, norm, frames, [])


def run_eval(s: Session, writer) -> None:
    s.heartbeat.state("evaluating")
    result = evaluate(s.model, s.eval_data, s.step, s.spec.train.sub_talker_weight, s.spec.train.eval_max_rows,
                      s.device)
    s.evals.append(result)
    if s.is_main:
        atomic_write_bytes(s.run_dir / REPORT_FILE, msgspec.json.encode({"evals": s.evals}))
        writer.add_scalar("eval/total", result.losses.total, s.step)
        writer.add_scalar("eval/talker", result.losses.talker, s.step)
        writer.add_scalar("eval/code_predictor", result.losses.code_predictor, s.step)
        for kind, losses in result.per_split.items():
            writer.add_scalar(f"eval/{kind}/total", losses.total, s.step)
    s.heartbeat.update(state="training", last_eval=result)


def run_checkpoint(s: Session, final: bool = False) -> None:
    """A scheduled checkpoint goes to the background when the session has a writer; a final one never does."""
    finish_background(s, wait=True)  # one write at a time, and in step order
    s.heartbeat.state("checkpointing")
    path = write_checkpoint(s, background=not final)
    if path is not None:
        checkpoint_done(s, path)
    s.heartbeat.state("training")


def log_step(s: Session, losses: Losses, writer) -> None:
    if not s.is_main:
        return
    line = msgspec.json.encode({"step": s.step, "total": losses.total, "talker": losses.talker,
                                "code_predictor": losses.code_predictor})
    with (s.run_dir / LOSSES_FILE).open("ab") as handle:
        handle.write(line + b"\n")
    writer.add_scalar("train/total", losses.total, s.step)
    writer.add_scalar("train/talker", losses.talker, s.step)
    writer.add_scalar("train/code_predictor", losses.code_predictor, s.step)


def loop(s: Session, stop: StopFlag, writer) -> int:
    posture = s.spec.posture
    s.stop_asked = lambda: stop.requested
    t0, step0, frames_total = time.perf_counter(), s.step, 0
    s.heartbeat.update(state="training", step=s.step, epoch=s.cursor.epoch)
    while s.step < s.spec.train.max_steps:
        finish_background(s, wait=False)
        outcome = train_step(s)
        if outcome.problems:
            code = handle_non_finite(s, outcome)
            if code is not None:
                return code
            t0, step0, frames_total = time.perf_counter(), s.step, 0
            continue
        losses, frames = outcome.losses, outcome.frames
        reserve_background(s)
        if not math.isfinite(losses.total):  # only reachable with guard.enabled = false
            s.heartbeat.state("failed_non_finite", f"non-finite loss at step {s.step} with the guard disabled")
            return exitcodes.FAILED_NON_FINITE
        frames_total += frames
        elapsed = max(time.perf_counter() - t0, 1e-9)
        s.heartbeat.update(
            state="training", step=s.step, epoch=s.cursor.epoch, losses=losses,
            lr=float(s.scheduler.get_last_lr()[0]),
            throughput=Throughput(steps_per_s=(s.step - step0) / elapsed, frames_per_s=frames_total / elapsed),
        )
        log_step(s, losses, writer)
        if s.step % posture.eval_every == 0:
            run_eval(s, writer)
        if s.step % posture.checkpoint_every == 0:
            run_checkpoint(s)
        if s.stop_agreed:  # a signal here or on another rank, agreed in this step's reduce
            return _stop(s, stop)
    if s.step % posture.checkpoint_every != 0:
        run_checkpoint(s, final=True)
    finish_background(s, wait=True)
    s.heartbeat.state("completed", f"reached max_steps={s.spec.train.max_steps}")
    return exitcodes.COMPLETED


def _stop(s: Session, stop: StopFlag) -> int:
    cause = stop.signal_name or "a stop asked of another rank"
    s.heartbeat.state("stopping", f"{cause} received; writing a checkpoint")
    if s.step % s.spec.posture.checkpoint_every != 0:
        run_checkpoint(s, final=True)
    finish_background(s, wait=True)
    s.heartbeat.state("stopped", f"stopped on {cause} at step {s.step} after a durable checkpoint")
    return exitcodes.STOPPED


def _reject(heartbeat: Heartbeat, exc: Exception) -> int:
    heartbeat.update(state="cursor_rejected", cursor_check=f"rejected: {exc}", message=str(exc))
    print(f"qwen-train: {exc}", file=sys.stderr)
    return exitcodes.CURSOR_REJECTED


def launch_ranks(spec: RunSpec, run_dir: Path, run_id: str, nonce: str) -> int:
    """This process becomes the supervisor of `train.processes` ranks, after checking they can run here."""
    cpu = spec.train.device == "cpu" or (spec.train.device == "auto" and not torch.cuda.is_available())
    if not cpu and torch.cuda.device_count() < spec.train.processes:
        message = (f"train.processes is {spec.train.processes} but this machine shows "
                   f"{torch.cuda.device_count()} GPU(s): lower train.processes or give the run more GPUs")
        heartbeat = Heartbeat(run_dir, run_id, nonce, spec.train.max_steps)
        heartbeat.state("failed", message)
        print(f"qwen-train: {message}", file=sys.stderr)
        return exitcodes.USAGE
    return ranks.supervise(spec.train.processes, run_dir)


def run_training(spec: RunSpec, run_dir: Path, run_id: str, nonce: str, resume: bool,
                 reset_cursor: bool = False, bundle_root: Path | None = None) -> int:
    from torch.utils.tensorboard import SummaryWriter

    if spec.train.processes > 1 and not ranks.in_rank():
        return launch_ranks(spec, run_dir, run_id, nonce)
    ranks.die_with_supervisor()
    run_dir.mkdir(parents=True, exist_ok=True)
    stop = StopFlag()
    stop.install()
    heartbeat = Heartbeat(run_dir, run_id, nonce, spec.train.max_steps)
    heartbeat.state("starting", "loading model and bundle")
    try:
        if not (resume or reset_cursor) and list_checkpoints(run_dir):
            heartbeat.state("failed", f"{run_dir} already holds checkpoints")
            print(f"qwen-train: {run_dir} already holds checkpoints of an earlier run; pass --resume to continue it "
                  "or choose another --run-dir", file=sys.stderr)
            return exitcodes.USAGE
        session = build_session(spec, run_dir, heartbeat, bundle_root)
        if resume or reset_cursor:
            restore(session, reset_cursor=reset_cursor)
        if session.is_main:
            clean_temporaries(run_dir)
    except (CheckpointError, CursorRejected) as exc:
        return _reject(heartbeat, exc)
    except Exception as exc:
        heartbeat.state("failed", f"setup failed: {type(exc).__name__}: {exc}")
        raise
    with SummaryWriter(log_dir=str(run_dir / "tensorboard")) as writer:
        try:
            return loop(session, stop, writer)
        except Exception as exc:
            heartbeat.state("failed", f"training failed at step {session.step}: {type(exc).__name__}: {exc}")
            raise
        finally:
            if session.checkpointer is not None and session.checkpointer.busy:
                session.checkpointer.wait()  # a snapshot taken before the failure is still worth keeping
