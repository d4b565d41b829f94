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
Errors are ErrorBody with a 4xx/5xx status.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from qwen_daemon.resources import ResourceSample, ResourceSummary
from qwen_train.spec import RunSpec
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


class LaunchRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Either an inline spec (absolute paths) or a spec file on the daemon's host."""

    spec: RunSpec | None = None
    spec_path: str | None = None


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
    ended_at: float | None = None
    exit_code: int | None = None
    stale_reason: str | None = None
    step: int | None = None
    max_steps: int | None = None
    loss: float | None = None
    eval_loss: float | None = None
    steps_per_s: float | None = None
    message: str | None = None


class RunDetail(msgspec.Struct, frozen=True):
    run: RunView
    status: Status | None
    summary: ResourceSummary
    events: list[Event] = []


class RunList(msgspec.Struct, frozen=True):
    runs: list[RunView]


class SamplerHealth(msgspec.Struct, frozen=True):
    period_s: float
    last_sample: float | None
    alive: bool
    gpu_note: str | None = None


class HostView(msgspec.Struct, frozen=True):
    sampler: SamplerHealth
    sample: ResourceSample | None = None


class HealthView(msgspec.Struct, frozen=True):
    ok: bool
    version: str
    pid: int
