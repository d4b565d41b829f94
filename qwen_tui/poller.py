"""One round trip to the daemon, as a value the UI can apply in a single step.

The client is blocking, so `fetch_snapshot` runs in a worker thread and hands
the UI a complete, immutable `Snapshot`. What is fetched besides the run list
and the host follows what the screen on top `Wants`: a run's detail (with its
history and diagnosis), its resource series, a run's gate verdict, the
surfaces board, the bind roots, the disks. The resource series is paced (`paced`): it
changes at the sampler's pace and costs the daemon more than a detail, so it
is asked for every RESOURCES_EVERY_S, not on every poll; a snapshot without
one leaves the last one on screen. Failures are split
by what they affect: an unreachable daemon (or a failing run list) is a
connection problem for the whole screen; any other failing route only blanks
the part of the screen that shows it, with the daemon's message in its place.
A verdict that does not exist yet (404) is no failure: it is what the gate
screen says, with the daemon's words on how to get one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

import msgspec

from qwen_daemon.protocol import (
    AuditList,
    BindRootsView,
    GateVerdict,
    HostView,
    RunDetail,
    RunHistory,
    RunResources,
    RunView,
    SurfaceList,
    kind_info,
)
from qwen_daemon.protocol.client import DaemonClient, DaemonError
from qwen_daemon.protocol.disk import DiskView
from qwen_daemon.protocol.gpu import GpuStatus
from qwen_train.status import Diagnosis

T = TypeVar("T")

RESOURCES_EVERY_S = 5.0


@dataclass(frozen=True)
class Wants:
    """What a screen shows beyond the run list and the host, so the poll fetches only that."""

    detail: str | None = None
    surfaces: bool = False
    bind_roots: bool = False
    gpu: bool = False  # the shared GPU's holders, reservation and queue
    disk: bool = False  # free space of the runs dir, the state dir and the bind roots; failing state writes
    gate: str | None = None  # a run whose gate verdict is shown
    resources: str | None = None  # a run whose resource series is shown
    resource_points: int | None = None  # at most this many points (None: the daemon's default)


@dataclass(frozen=True)
class Snapshot:
    """What the daemon said at `fetched_at`; each optional part is either a value or an error."""

    fetched_at: float
    runs: tuple[RunView, ...]
    host: HostView | None = None
    host_error: str | None = None
    detail_name: str | None = None
    detail: RunDetail | None = None
    detail_error: str | None = None
    history: RunHistory | None = None
    history_error: str | None = None
    diagnosis: Diagnosis | None = None
    diagnosis_error: str | None = None
    surfaces: SurfaceList | None = None
    audit: AuditList | None = None
    surfaces_error: str | None = None
    bind_roots: BindRootsView | None = None
    bind_roots_error: str | None = None
    gpu: GpuStatus | None = None
    gpu_error: str | None = None
    disk: DiskView | None = None
    disk_error: str | None = None
    gate_name: str | None = None
    verdict: GateVerdict | None = None
    verdict_missing: str | None = None  # the daemon's 404: no verdict yet, and how to get one
    verdict_error: str | None = None
    resources_name: str | None = None  # set only when this poll asked for the series
    resources: RunResources | None = None
    resources_error: str | None = None

    def run(self, name: str) -> RunView | None:
        for view in self.runs:
            if view.name == name:
                return view
        return None


class Cadence:
    """Lets a slow part of the poll through at most every `every_s` for the same key; a new key at once."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._last: tuple[object, float] | None = None

    def due(self, key: object, now: float) -> bool:
        if self._last is not None and self._last[0] == key and now - self._last[1] < self.every_s:
            return False
        self._last = (key, now)
        return True


def paced(wants: Wants, cadence: Cadence, now: float) -> Wants:
    """`wants` with the resource series left out unless `cadence` says it is due (a new run or width: at once)."""
    if wants.resources is None or cadence.due((wants.resources, wants.resource_points), now):
        return wants
    return replace(wants, resources=None)


@dataclass(frozen=True)
class Connection:
    """Whether the last poll reached the daemon, and when one last did."""

    error: str | None = None
    last_ok: float | None = None
    interval: float = 1.0


def _part(call: Callable[[], T]) -> tuple[T | None, str | None]:
    """One route's answer or its error text; an unreachable daemon still fails the whole poll."""
    try:
        return call(), None
    except DaemonError as exc:
        if exc.status == 0:
            raise
        return None, str(exc)
    except msgspec.MsgspecError as exc:
        return None, f"the daemon sent a reply this dashboard cannot read: {exc}"


def wants_diagnosis(detail: RunDetail) -> bool:
    """Ask /diagnosis only where one can exist and the trusted status does not carry it.

    A run whose trusted status has no non-finite event has nothing to diagnose;
    asking on every poll would only collect 404s.
    """
    status, diagnoses = detail.status, kind_info(detail.run.kind).diagnoses
    if status is None:
        return diagnoses or detail.run.state == "failed_non_finite"
    return status.diagnosis is None and (bool(status.non_finite_events) or diagnoses)


def _verdict(client: DaemonClient, name: str) -> tuple[GateVerdict | None, str | None, str | None]:
    """(verdict, why there is none yet, why it cannot be read)."""
    try:
        return client.verdict(name), None, None
    except DaemonError as exc:
        if exc.status == 0:
            raise
        return (None, str(exc), None) if exc.status == 404 else (None, None, str(exc))
    except msgspec.MsgspecError as exc:
        return None, None, f"the daemon sent a verdict this dashboard cannot read: {exc}"


def fetch_snapshot(client: DaemonClient, wants: Wants | None = None) -> Snapshot:
    """Blocking. Raises DaemonError only when the run list itself cannot be had."""
    wants = wants or Wants()
    runs = client.runs().runs
    host, host_error = _part(client.host)
    snapshot = Snapshot(time.time(), tuple(runs), host, host_error, detail_name=wants.detail)
    name = wants.detail
    if name is not None:
        detail, detail_error = _part(lambda: client.run(name))
        snapshot = replace(snapshot, detail=detail, detail_error=detail_error)
        if detail is not None:
            history, history_error = _part(lambda: client.history(name))
            snapshot = replace(snapshot, history=history, history_error=history_error)
            if wants_diagnosis(detail):
                diagnosis, diagnosis_error = _part(lambda: client.diagnosis(name))
                snapshot = replace(snapshot, diagnosis=diagnosis, diagnosis_error=diagnosis_error)
    series_of = wants.resources
    if series_of is not None and (series_of != name or snapshot.detail is not None):
        series, series_error = _part(lambda: client.resources(series_of, wants.resource_points))
        snapshot = replace(snapshot, resources_name=series_of, resources=series, resources_error=series_error)
    if wants.surfaces:
        surfaces, surfaces_error = _part(client.surfaces)
        audit, audit_error = _part(client.audit)
        snapshot = replace(snapshot, surfaces=surfaces, audit=audit, surfaces_error=surfaces_error or audit_error)
    if wants.bind_roots:
        roots, roots_error = _part(client.bind_roots)
        snapshot = replace(snapshot, bind_roots=roots, bind_roots_error=roots_error)
    if wants.gpu:
        gpu, gpu_error = _part(client.gpu_status)
        snapshot = replace(snapshot, gpu=gpu, gpu_error=gpu_error)
    if wants.disk:
        disk, disk_error = _part(client.disk)
        snapshot = replace(snapshot, disk=disk, disk_error=disk_error)
    if wants.gate is not None:
        verdict, missing, error = _verdict(client, wants.gate)
        snapshot = replace(snapshot, gate_name=wants.gate, verdict=verdict, verdict_missing=missing,
                           verdict_error=error)
    return snapshot
