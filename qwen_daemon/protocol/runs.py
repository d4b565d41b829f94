"""Runs as the API shows them: a row of the runs table, a run's detail, its curves.

A run's `state` is the registry's; its `health` is whether its status.json may be trusted
(runs/trust.py decides). Diagnose and gate jobs are rows too, with `parent` naming their run.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from qwen_daemon.protocol.resources import ResourceSummary
from qwen_daemon.protocol.scores import ScorePoint
from qwen_train.spec import TrainMode
from qwen_train.status import Event, Status

RunState = Literal[
    "queued",  # waiting for room on the GPU (or its reservation to end); not yet launched
    "launching",
    "running",
    "stopping",
    "stopped",
    "completed",
    "failed",
    "cursor_rejected",
    "failed_non_finite",
    "failed_oom",  # the GPU ran out of memory in a step; nothing lost, resume with a smaller batch or budget
    "failed_disk_full",  # the run dir's disk could not take a write; nothing durable lost, resume once there is room
    "interrupted",
]


Health = Literal["live", "stale", "waiting", "ended"]
ACTIVE_STATES: frozenset[str] = frozenset({"launching", "running", "stopping"})
# Not ended: launched, or queued for the GPU and still to launch (a stop ends either).
PENDING_STATES: frozenset[str] = ACTIVE_STATES | {"queued"}


class LossPoint(msgspec.Struct, frozen=True):
    step: int
    total: float
    talker: float
    code_predictor: float


class EvalPoint(msgspec.Struct, frozen=True):
    step: int
    total: float
    per_split: dict[str, float] = {}


class RunHistory(msgspec.Struct, frozen=True):
    """Curves for the dashboard: from the run's losses.jsonl and report.json (downsampled to <= 2000 points),
    and its listening scores (RUN_DIR/scores/): one point per scored checkpoint, oldest first, the base
    model's row, and the best checkpoint by protocol.scores.BEST_RULE."""

    name: str
    losses: list[LossPoint] = []
    evals: list[EvalPoint] = []
    scores: list[ScorePoint] = []
    base_scores: ScorePoint | None = None
    best_score_step: int | None = None


class RunView(msgspec.Struct, frozen=True):
    """One row of the runs table: registry facts plus the trusted status."""

    name: str
    lane: str
    surface: str
    runner: str
    state: RunState
    health: Health
    run_dir: str
    created_at: float
    nonce: str | None = None
    pid: int | None = None
    container: str | None = None
    surface_class: str | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    stale_reason: str | None = None
    step: int | None = None
    max_steps: int | None = None
    loss: float | None = None
    eval_loss: float | None = None
    steps_per_s: float | None = None
    message: str | None = None
    kind: str = "train"
    parent: str | None = None  # a diagnose or gate job's run
    warning: str | None = None  # something the operator should know while it runs (low GPU headroom)
    # What a training run trains, from its spec: "full" (also every run from before adapters), or "lora" for
    # an adapter run (train.adapter); `mode_detail` in words (qwen_train.spec.mode_description), None for jobs.
    mode: TrainMode = "full"
    mode_detail: str | None = None
    scored: bool = False  # a training run whose spec turns listening scores on (scores.enabled): the daemon scores it


class CheckpointView(msgspec.Struct, frozen=True):
    """One durable checkpoint (RUN_DIR/checkpoints/step-N): its meta.json and a stat of its files.

    `size_bytes` is what its files take on disk. `resume` marks the one a resume starts from: the
    newest, because the trainer takes the newest and refuses a broken one rather than fall back.
    `error` says why a checkpoint cannot be read or used (a malformed meta.json, a file shorter than
    its manifest); its other fields are then filled as far as they are known.
    """

    name: str
    step: int | None = None
    created_at: float | None = None
    size_bytes: int = 0
    epoch: int | None = None
    position: int | None = None
    batches_per_epoch: int | None = None
    resume: bool = False
    error: str | None = None


class RunDetail(msgspec.Struct, frozen=True):
    """`checkpoints` oldest first; `checkpoints_error` when the checkpoints dir itself cannot be listed."""

    run: RunView
    status: Status | None
    summary: ResourceSummary
    events: list[Event] = []
    checkpoints: list[CheckpointView] = []
    checkpoints_error: str | None = None


class RunList(msgspec.Struct, frozen=True):
    runs: list[RunView]
