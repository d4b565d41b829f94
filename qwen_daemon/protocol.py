"""The daemon's API, defined once for the server, the CLI and the dashboard.

HTTP+JSON over a Unix socket. Every body that crosses the socket is one of
these Structs; the server decodes requests with them and the client decodes
responses with them, so a change here is a change on both sides.

Routes:
  GET  /health                 -> Health
  GET  /host                   -> HostView
  GET  /runs                   -> RunList
  POST /runs      LaunchRequest -> RunView      (201)
  GET  /runs/{name}            -> RunDetail
  POST /runs/{name}/stop       -> RunView
  POST /runs/{name}/resume     -> RunView      (201; from the newest durable checkpoint)
  GET  /surfaces               -> SurfaceList
  POST /surfaces/{name}/class  ClassChange -> Surface   (audited)
  GET  /surfaces/audit         -> AuditList
  GET  /bind-roots             -> BindRootsView
  POST /bind-roots/probe       -> ProbeView
  GET  /runs/{name}/history    -> RunHistory    (per-step losses and evals of the active launch)
  GET  /runs/{name}/resources?points=N -> RunResources (the run's resource series, <= N points; series.py)
  GET  /runs/{name}/diagnosis  -> Diagnosis     (404 until a diagnosis exists)
  POST /runs/{name}/diagnose   DiagnoseRequest -> RunView   (a `diagnose` job replaying that run)
  POST /runs/{name}/gate       GateRequest -> RunView       (201; a `gate` job judging that run)
  GET  /runs/{name}/gate       -> GateVerdict   (404 until a verdict exists; 422 for a corrupt one)
A LaunchRequest with kind "preprocess" carries a PrepareSpec (inline or a file) instead of a RunSpec
and runs `qwen-train prepare` with the same nonce, heartbeat and resource summary as training
(lane "-": no lane policy; surface from the request, default "default"). Resume reruns prepare,
which continues from its journal. A diagnose job is named RUN.diagnose, has parent RUN and lane,
surface and runner of RUN; it writes no status.json, so its health is its process's (live while it
runs) and its message is its diagnosis's first line or its last line of output. Diagnose is 409
while RUN is active, and RUN's resume 409 while its replay runs. history and diagnosis of a
diagnose job are its run's. history: 422 for a malformed report.json; diagnosis: 404 until a
diagnosis.json exists, 422 (naming the file) for a malformed one.
A gate job is named RUN.gate, parent RUN, like a diagnose job (no status.json; lane, surface and runner
of RUN); it runs `qwen-train gate RUN_DIR` and exit GATE_FAILED (ran, verdict says no) is `completed`.
It is 404 for an unknown RUN, 422 for a RUN that is no training run and 409 while RUN is active (and
RUN's resume 409 while its gate runs). `asr` and `thresholds` must be absolute paths on the daemon's
host, under its bind roots where it has any. Before launching, the daemon rewrites RUN_DIR/resources.json
(RUN's ResourceSummary, also written whenever a launch of RUN ends) for the gate's resource evidence.
The verdict (GateVerdict) is the gate's own file, RUN_DIR/gate/verdict.json; that of RUN.gate or
RUN.diagnose is RUN's.
resources: `points` is an integer in [1, 1000] (default 120); anything else, or another query parameter,
is a 400 naming it. RunDetail.checkpoints lists RUN_DIR/checkpoints/step-N (a job's: its run's), oldest
first, without a hash check (checkpoints.py); an unreadable one is a row with its error, never a 5xx.
Errors are ErrorBody with a 4xx/5xx status; a governance refusal is 403 and names its rule.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from qwen_daemon.bindroots import BindRootsView, ProbeView
from qwen_daemon.governance import AuditEntry, Surface, SurfaceClass
from qwen_daemon.resources import Gap, ResourceSample, ResourceSummary
from qwen_train.gate.verdict import Criterion, GateVerdict
from qwen_train.prepare.spec import PrepareSpec
from qwen_train.spec import Runner, RunSpec
from qwen_train.status import Event, Status

RunState = Literal[
    "launching",
    "running",
    "stopping",
    "stopped",
    "completed",
    "failed",
    "cursor_rejected",
    "failed_non_finite",
    "interrupted",
]
Health = Literal["live", "stale", "waiting", "ended"]

ACTIVE_STATES: frozenset[str] = frozenset({"launching", "running", "stopping"})


class ErrorBody(msgspec.Struct, frozen=True):
    error: str
    detail: str | None = None


JobKind = Literal["train", "preprocess", "diagnose", "gate"]


class LaunchRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Either an inline spec (absolute paths) or a spec file on the daemon's host.

    kind "train" takes `spec`/`spec_path` (a RunSpec); kind "preprocess" takes
    `prepare`/`spec_path` (a PrepareSpec). `diagnose` and `gate` jobs come from POST .../diagnose
    and POST .../gate.
    `surface` and `runner` are for "preprocess" only (a PrepareSpec names neither;
    defaults "default" and "process"); a training run takes both from its RunSpec.
    """

    spec: RunSpec | None = None
    spec_path: str | None = None
    kind: JobKind = "train"
    prepare: PrepareSpec | None = None
    surface: str | None = None
    runner: Runner | None = None


class DiagnoseRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Replay run `name` to `step` (default: its last non-finite event) and diagnose it."""

    step: int | None = None


class GateRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Run the promotion gate on run `name`: `asr` an ASR model dir, `thresholds` a JSON file (both absolute
    paths on the daemon's host), `checkpoint` the step to judge (default: the run's newest checkpoint)."""

    asr: str | None = None
    thresholds: str | None = None
    checkpoint: int | None = None


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
    """Curves for the dashboard: from the run's losses.jsonl and report.json (downsampled to <= 2000 points)."""

    name: str
    losses: list[LossPoint] = []
    evals: list[EvalPoint] = []


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


class ResourceBucket(msgspec.Struct, frozen=True):
    """One point of a resource series: the samples taken in [start, end) (the last bucket includes its end).

    `gap`: it overlaps a stretch without samples (longer than 3 sampler periods): drawn as a gap,
    and where it has no sample at all its values are None, never zero. `relaunch`: a later launch
    of the run (a resume) starts inside it; the time between launches is not on the axis.
    """

    start: float
    end: float
    samples: int
    gap: bool = False
    relaunch: bool = False


class MetricSeries(msgspec.Struct, frozen=True):
    """Per bucket, the median and the max of the metric's samples (None: no sample in that bucket);
    `last`: its value in the newest sample that has it."""

    median: list[float | None]
    max: list[float | None]
    last: float | None = None


class RunResources(msgspec.Struct, frozen=True):
    """A run's resources over its launches, downsampled to at most `points` buckets.

    `metrics` are those of `qwen_daemon.summary.metric_values` (host CPU/RAM, per GPU busy/VRAM,
    the run's own CPU, RSS and GPU memory), each list aligned with `buckets`. `gaps` are the
    summary's gaps (per launch, longer than 3 sampler periods without a sample).
    """

    name: str
    period_s: float
    points: int
    samples: int
    buckets: list[ResourceBucket] = []
    metrics: dict[str, MetricSeries] = {}
    gaps: list[Gap] = []
    gpu_note: str | None = None


class RunList(msgspec.Struct, frozen=True):
    runs: list[RunView]


class SamplerHealth(msgspec.Struct, frozen=True):
    """`gaps`: the recent stretches without a sample (the daemon's downtime included, and
    one still open if the sampler is not alive). `journal`: where samples go, or why not."""

    period_s: float
    last_sample: float | None
    alive: bool
    gpu_note: str | None = None
    gaps: list[Gap] = []
    journal: str | None = None


class HostView(msgspec.Struct, frozen=True):
    sampler: SamplerHealth
    sample: ResourceSample | None = None


class HealthView(msgspec.Struct, frozen=True):
    ok: bool
    version: str
    pid: int


class ClassChange(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """An explicit surface class change; `gate` (a passed verdict file) unblocks a recovery surface."""

    klass: SurfaceClass = msgspec.field(name="class")
    reason: str = ""
    gate: str | None = None
    notes: str | None = None


class SurfaceList(msgspec.Struct, frozen=True):
    surfaces: list[Surface]
    path: str


class AuditList(msgspec.Struct, frozen=True):
    entries: list[AuditEntry]


__all__ = [
    "ACTIVE_STATES", "AuditList", "BindRootsView", "CheckpointView", "ClassChange", "Criterion", "DiagnoseRequest",
    "ErrorBody", "EvalPoint", "GateRequest", "GateVerdict", "Health", "HealthView", "HostView", "JobKind",
    "LaunchRequest", "LossPoint", "MetricSeries", "ProbeView", "ResourceBucket", "RunDetail", "RunHistory", "RunList",
    "RunResources", "RunState", "RunView", "SamplerHealth", "Surface", "SurfaceList",
]
