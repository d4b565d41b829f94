"""status.json: the trainer's heartbeat, the one record the daemon reads.

The trainer rewrites it atomically on every optimizer step. It echoes the
launch nonce and the pid/container so the daemon can tell this launch's
heartbeat from a leftover of an earlier one. No torch here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

from qwen_train.atomic import atomic_write_bytes

STATUS_FILE = "status.json"
# How the daemon hands every job its launch nonce (diagnose and gate take no --nonce); status.json echoes it.
NONCE_ENV = "QWEN_RUN_NONCE"

TrainerState = Literal[
    "starting",
    "preparing",
    "training",
    "evaluating",
    "checkpointing",
    "stopping",
    "stopped",
    "completed",
    "failed",
    "cursor_rejected",
    "failed_non_finite",
    "failed_oom",
    "failed_disk_full",
]

TERMINAL_STATES: frozenset[str] = frozenset(
    {"stopped", "completed", "failed", "cursor_rejected", "failed_non_finite", "failed_oom", "failed_disk_full"}
)


class StatusError(ValueError):
    """A status.json that cannot be trusted (missing, truncated, malformed)."""


class Losses(msgspec.Struct, frozen=True):
    total: float
    talker: float
    code_predictor: float


class Throughput(msgspec.Struct, frozen=True):
    steps_per_s: float
    frames_per_s: float


class CheckpointRef(msgspec.Struct, frozen=True):
    step: int
    path: str
    written_at: float


class EvalResult(msgspec.Struct, frozen=True):
    """Held-out losses at one step, overall and per split/speaker."""

    step: int
    losses: Losses
    rows: int
    per_split: dict[str, Losses] = {}
    per_speaker: dict[str, Losses] = {}


class Event(msgspec.Struct, frozen=True):
    """Something the operator should see in the run's history; `data` carries its numbers as text."""

    time: float
    kind: str
    message: str
    step: int | None = None
    data: dict[str, str] = {}


class ModuleFinding(msgspec.Struct, frozen=True):
    """A module where the diagnosis saw a finite input become a non-finite output (or gradient)."""

    name: str
    dtype: str
    input_absmax: str
    output_absmax: str


class Diagnosis(msgspec.Struct, frozen=True):
    """Which loss part broke, which module broke first (forward, backward), and the fp32 verdict."""

    step: int
    epoch: int
    position: int
    loss_parts: dict[str, str]
    grad_norm: str
    broken_parts: list[str]
    forward: ModuleFinding | None
    backward: ModuleFinding | None
    backward_note: str
    precision: str
    fp32_reproduces: bool | None
    summary: str
    created_at: float
    recipe: str | None = None  # the training recipe (fp32-master, lean); None in diagnoses from before recipes


class Status(msgspec.Struct, frozen=True):
    run_id: str
    nonce: str
    host: str
    pid: int
    state: TrainerState
    heartbeat: float
    started_at: float
    step: int = 0
    max_steps: int = 0
    epoch: int = 0
    container: str | None = None
    losses: Losses | None = None
    lr: float | None = None
    throughput: Throughput | None = None
    last_checkpoint: CheckpointRef | None = None
    last_eval: EvalResult | None = None
    cursor_check: str | None = None
    non_finite_events: list[Event] = []
    events: list[Event] = []
    message: str | None = None
    diagnosis: Diagnosis | None = None
    retries: int = 0
    recipe: str | None = None  # the resolved training recipe and why, e.g. "recipe lean: bf16 weights ..."
    # How the layers run: compiled (with which backend), or eager and why; a failed compile names its error
    # and the step rerun eagerly (train/device/fallback.py). None in runs from before it was recorded.
    compilation: str | None = None
    # How micro-batches are made: a frame budget (and, for "auto", what sized it) or a row count.
    batching: str | None = None
    # Where the time to the first step went, phase by phase (train/startup.py); None before it is known.
    startup: str | None = None


def write_status(run_dir: Path, status: Status) -> None:
    """Atomic but not fsynced: the heartbeat is rewritten every step."""
    atomic_write_bytes(run_dir / STATUS_FILE, msgspec.json.encode(status), durable=False)


def read_status(path: Path) -> Status:
    """Decode a status.json; every failure is a StatusError naming the file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise StatusError(f"{path}: no status.json yet") from None
    except OSError as exc:
        raise StatusError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return msgspec.json.decode(raw, type=Status)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise StatusError(f"{path}: malformed status.json: {exc}") from None
