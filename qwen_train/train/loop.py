"""The train loop: step, heartbeat, eval, and hand each step to the checkpointer.

Stopping is cooperative: SIGTERM/SIGINT set a flag, the current optimizer
step finishes, a durable checkpoint is written, and the process exits with
`exitcodes.STOPPED` so the daemon records `stopped`, not `failed`. A bundle
without eval rows trains all the same, with eval reported as not available
(an event, report.json's `eval` and the final message), never a crash at the
first eval with nothing saved. A disk that fills under any of the run's
writes ends it `failed_disk_full` (train/device/diskspace.py), never a traceback; the
run starts only when its next checkpoint fits, and says how many more do.
"""

from __future__ import annotations

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
from qwen_train.bundle.manifest import BundleError
from qwen_train.disk import DiskFull, disk_errno, disk_writes
from qwen_train.spec import RunSpec, TrainConfig, mode_description
from qwen_train.status import Losses, Throughput
from qwen_train.train.board import BOARD_DIR, Board
from qwen_train.train.checkpointing.checkpoint import CheckpointError, list_checkpoints
from qwen_train.train.checkpointing.losslog import append_losses
from qwen_train.train.data.budget import BudgetError
from qwen_train.train.data.cursor import CursorRejected
from qwen_train.train.device import ranks
from qwen_train.train.device.diskspace import Reserve, announce_disk, end_disk_full, ensure_room, next_checkpoint
from qwen_train.train.device.fallback import announce_compilation, eval_or_eager, step_or_eager
from qwen_train.train.device.oom import end_out_of_memory
from qwen_train.train.evaluate import evaluate, unavailable_reason
from qwen_train.train.guard.faults import pause
from qwen_train.train.guard.retry import handle_non_finite
from qwen_train.train.heartbeat import Heartbeat
from qwen_train.train.recipes.adapter import AdapterError
from qwen_train.train.session import Session, build_session
from qwen_train.train.startup import Startup

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


def eval_unavailable(s: Session) -> str | None:
    why = unavailable_reason(s.data.eval, s.spec.train.eval_max_rows)
    return f"eval not available: {why}; training goes on without held-out losses" if why else None


def announce_eval(s: Session) -> None:
    """Say once, where the operator looks (status events, report.json, the log), that no eval will come."""
    why = eval_unavailable(s)
    if why is None:
        return
    s.heartbeat.event("eval", why)
    if s.is_main:
        with disk_writes(REPORT_FILE, s.run_dir):
            atomic_write_bytes(s.run_dir / REPORT_FILE, msgspec.json.encode({"evals": s.progress.evals, "eval": why}))
    print(f"qwen-train: {why}", file=sys.stderr, flush=True)


def run_eval(s: Session, writer: Board) -> None:
    p = s.progress
    if eval_unavailable(s) is not None:
        return
    s.heartbeat.state("evaluating")
    result = eval_or_eager(s, lambda: evaluate(s.model, s.data.eval, p.step, s.spec.train.sub_talker_weight,
                                               s.spec.train.eval_max_rows, s.device))
    p.evals.append(result)
    if s.is_main:
        with disk_writes(REPORT_FILE, s.run_dir):
            atomic_write_bytes(s.run_dir / REPORT_FILE, msgspec.json.encode({"evals": p.evals}))
        writer.add_scalar("eval/total", result.losses.total, p.step)
        writer.add_scalar("eval/talker", result.losses.talker, p.step)
        writer.add_scalar("eval/code_predictor", result.losses.code_predictor, p.step)
        for kind, losses in result.per_split.items():
            writer.add_scalar(f"eval/{kind}/total", losses.total, p.step)
    s.heartbeat.update(state="training", last_eval=result)


def log_step(s: Session, losses: Losses, writer: Board) -> None:
    if not s.is_main:
        return
    step = s.progress.step
    append_losses(s.run_dir, step, losses)
    writer.add_scalar("train/total", losses.total, step)
    writer.add_scalar("train/talker", losses.talker, step)
    writer.add_scalar("train/code_predictor", losses.code_predictor, step)


def loop(s: Session, stop: StopFlag, writer: Board) -> int:
    """Steps until `max_steps`, a stop or a failure; the checkpointer decides which steps it writes."""
    p = s.progress
    t0, step0, frames_total = time.perf_counter(), p.step, 0
    s.heartbeat.update(state="training", step=p.step, epoch=p.cursor.epoch)
    while p.step < s.spec.train.max_steps:
        micro_before = p.micro_steps
        began = time.perf_counter()
        try:
            outcome = step_or_eager(s, lambda: stop.requested)
        except torch.OutOfMemoryError as exc:  # not applied, nothing written after it: see oom.py
            return end_out_of_memory(s, exc, micro_before)
        if s.startup is not None:
            s.startup.first_step(time.perf_counter() - began, s.perf.compile_layers)
        if outcome.problems:
            code = handle_non_finite(s, outcome)
            if code is not None:
                return code
            t0, step0, frames_total = time.perf_counter(), p.step, 0
            continue
        losses, frames = outcome.losses, outcome.frames
        if not math.isfinite(losses.total):  # only reachable with guard.enabled = false
            s.heartbeat.state("failed_non_finite", f"non-finite loss at step {p.step} with the guard disabled")
            return exitcodes.FAILED_NON_FINITE
        frames_total += frames
        elapsed = max(time.perf_counter() - t0, 1e-9)
        s.heartbeat.update(
            state="training", step=p.step, epoch=p.cursor.epoch, losses=losses,
            lr=float(s.scheduler.get_last_lr()[0]),
            throughput=Throughput(steps_per_s=(p.step - step0) / elapsed, frames_per_s=frames_total / elapsed),
        )
        log_step(s, losses, writer)
        pause("step-end", p.step, until=lambda: stop.requested)
        if p.step % s.spec.posture.eval_every == 0:
            run_eval(s, writer)
        s.ckpt.save(p.step)
        if outcome.stop_agreed:  # a signal here or on another rank, agreed in this step's reduce
            return _stop(s, stop)
    s.ckpt.save(p.step, final=True)
    done, unavailable = f"reached max_steps={s.spec.train.max_steps}", eval_unavailable(s)
    s.heartbeat.state("completed", f"{done}; {unavailable}" if unavailable else done)
    return exitcodes.COMPLETED


FULL_RUN_LR = TrainConfig().lr  # the spec's default, chosen for a full fine-tune


def announce_recipe(s: Session) -> None:
    """The recipe the run trains with, and why, in status.json, the events and the log."""
    train = s.spec.train
    text = s.recipe.describe(str(s.accelerator.mixed_precision), train.freeze_text_embedding, train.adapter is not None)
    if train.adapter is not None:
        text += f"; trains {mode_description(train)}"
    s.heartbeat.update(recipe=text)
    s.heartbeat.event("recipe", text)
    print(f"qwen-train: {text}", file=sys.stderr, flush=True)
    if train.adapter is not None and train.lr <= FULL_RUN_LR:
        hint = (f"train.lr {train.lr:g} is a full fine-tune's learning rate; a LoRA adapter usually wants about ten "
                "times that (1e-4 to 2e-4): set train.lr in the spec if this run learns too slowly")
        s.heartbeat.event("hint", hint)
        print(f"qwen-train: {hint}", file=sys.stderr, flush=True)


def _stop(s: Session, stop: StopFlag) -> int:
    cause = stop.signal_name or "a stop asked of another rank"
    s.heartbeat.state("stopping", f"{cause} received; writing a checkpoint")
    s.ckpt.save(s.progress.step, final=True)
    s.heartbeat.state("stopped", f"stopped on {cause} at step {s.progress.step} after a durable checkpoint")
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


def check_disk(s: Session, reserve: Reserve) -> None:
    """Before the first step: the next checkpoint must fit (else DiskFull), the log says how many more do, and
    the reserve for the last words of a disk that fills later is taken."""
    state = s.ckpt.state()  # every rank: it gathers their RNG states
    if s.is_main:
        step = next_checkpoint(s.progress.step, s.spec.posture, s.spec.train.max_steps)
        need = ensure_room(s.run_dir, step, state, s.model)
        reserve.hold()
        announce_disk(s.heartbeat, s.run_dir, s.spec.posture, s.progress.step, need)


def run_training(spec: RunSpec, run_dir: Path, run_id: str, nonce: str, resume: bool,
                 reset_cursor: bool = False, bundle_root: Path | None = None) -> int:
    """Train (or supervise the ranks that do); a full disk met anywhere ends the run failed_disk_full."""
    if spec.train.processes > 1 and not ranks.in_rank():
        return launch_ranks(spec, run_dir, run_id, nonce)
    ranks.die_with_supervisor()
    heartbeat = Heartbeat(run_dir, run_id, nonce, spec.train.max_steps)
    reserve = Reserve(run_dir)
    try:
        return _train(spec, run_dir, heartbeat, reserve, resume, reset_cursor, bundle_root)
    except Exception as exc:
        if disk_errno(exc) is None:
            raise
        return end_disk_full(heartbeat, run_dir, spec.posture, exc, reserve)
    finally:
        reserve.release()


def _train(spec: RunSpec, run_dir: Path, heartbeat: Heartbeat, reserve: Reserve, resume: bool, reset_cursor: bool,
           bundle_root: Path | None) -> int:
    run_dir.mkdir(parents=True, exist_ok=True)
    stop = StopFlag()
    stop.install()
    heartbeat.state("starting", "loading model and bundle")
    try:
        if not (resume or reset_cursor) and list_checkpoints(run_dir):
            heartbeat.state("failed", f"{run_dir} already holds checkpoints")
            print(f"qwen-train: {run_dir} already holds checkpoints of an earlier run; pass --resume to continue it "
                  "or choose another --run-dir", file=sys.stderr)
            return exitcodes.USAGE
        startup = Startup(heartbeat)
        session = build_session(spec, run_dir, heartbeat, bundle_root, startup)
        announce_compilation(session)
        announce_recipe(session)
        with startup.phase("restoring the checkpoint" if resume or reset_cursor else "checking for checkpoints"):
            session.ckpt.load(resume=resume, reset_cursor=reset_cursor)
        announce_eval(session)
        with startup.phase("checking the disk"):
            check_disk(session, reserve)
    except (CheckpointError, CursorRejected) as exc:
        return _reject(heartbeat, exc)
    except (BudgetError, BundleError, AdapterError) as exc:  # the operator's to fix: no traceback
        heartbeat.state("failed", f"setup failed: {exc}")
        print(f"qwen-train: {exc}", file=sys.stderr)
        return exitcodes.USAGE
    except DiskFull:
        raise
    except Exception as exc:
        heartbeat.state("failed", f"setup failed: {type(exc).__name__}: {exc}")
        raise
    with Board(run_dir / BOARD_DIR) as writer:
        try:
            return loop(session, stop, writer)
        except BundleError as exc:  # a row's file refused mid-run (gone, a FIFO, out of the bundle): say which
            heartbeat.state("failed", f"training failed at step {session.progress.step}: {exc}")
            print(f"qwen-train: {exc}", file=sys.stderr)
            return exitcodes.FAILED
        except DiskFull:
            raise
        except Exception as exc:
            heartbeat.state("failed", f"training failed at step {session.progress.step}: {type(exc).__name__}: {exc}")
            raise
        finally:
            session.ckpt.close()
