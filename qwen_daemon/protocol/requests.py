"""Bodies that clients send, and the two answers every client needs first: health and errors.
"""

from __future__ import annotations

import msgspec

from qwen_daemon.protocol.kinds import JobKind
from qwen_daemon.protocol.surfaces import SurfaceClass
from qwen_train.prepare.spec import PrepareSpec
from qwen_train.spec import Runner, RunSpec


class ErrorBody(msgspec.Struct, frozen=True):
    error: str
    detail: str | None = None


class LaunchRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Either an inline spec (absolute paths) or a spec file on the daemon's host.

    kind "train" takes `spec`/`spec_path` (a RunSpec); kind "preprocess" takes
    `prepare`/`spec_path` (a PrepareSpec). `diagnose` and `gate` jobs come from POST .../diagnose
    and POST .../gate; `score` jobs from the daemon itself (jobs/scoring.py).
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
    """Run the promotion gate on run `name`: `asr` an ASR model dir, `verifier` a speaker-verification model
    dir (default: the gate's own resemblyzer), `thresholds` a JSON file (all absolute paths on the daemon's
    host), `checkpoint` the step to judge (default: the run's newest checkpoint)."""

    asr: str | None = None
    thresholds: str | None = None
    checkpoint: int | None = None
    verifier: str | None = None


class HealthView(msgspec.Struct, frozen=True):
    """`ok`: the daemon serves and monitors. `state_writes`: its own state writes a full disk refuses now."""

    ok: bool
    version: str
    pid: int
    state_writes: list[str] = []


class ClassChange(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """An explicit surface class change; `gate` (a passed verdict file) unblocks a recovery surface."""

    klass: SurfaceClass = msgspec.field(name="class")
    reason: str = ""
    gate: str | None = None
    notes: str | None = None
