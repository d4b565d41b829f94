"""A scripted daemon for the dashboard's Pilot tests (no tests of its own).

`ScriptedDaemon` is the dashboard's client with every route answered from
in-memory records, so the app's real poller, workers, screens and actions run
unchanged; only the socket is missing. Each route can be made to fail with the
daemon's own error (`fail["resume"] = DaemonError(409, ...)`), and `up = False`
makes the whole daemon unreachable. test_tui_live.py drives the same app
against a real `qwen-daemon serve`.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable

import msgspec
from rich.console import Console
from textual.pilot import Pilot

from qwen_daemon.protocol import (
    AuditEntry,
    AuditList,
    BindRootStatus,
    BindRootsView,
    CheckpointView,
    HostView,
    JobKind,
    MetricStats,
    ProbeResult,
    ProbeView,
    ResourceSample,
    ResourceSummary,
    RunDetail,
    RunHistory,
    RunList,
    RunResources,
    RunView,
    SamplerHealth,
    Surface,
    SurfaceList,
)
from qwen_daemon.protocol.client import DaemonClient, DaemonError
from qwen_daemon.protocol.disk import DiskView
from qwen_daemon.protocol.gpu import GpuStatus
from qwen_train.spec import RunSpec
from qwen_train.status import Diagnosis, Status
from qwen_tui.app import HemmaApp

SIZE = (160, 45)


def run_view(name: str, **changes: object) -> RunView:
    base: dict[str, object] = dict(
        name=name,
        lane="single-speaker",
        surface="lab",
        surface_class="mechanism",
        runner="process",
        state="running",
        health="live",
        run_dir=f"/tmp/runs/{name}",
        created_at=time.time() - 60,
        step=10,
        max_steps=100,
        loss=2.0,
        steps_per_s=1.0,
    )
    base.update(changes)
    return RunView(**base)  # type: ignore[arg-type]


class ScriptedDaemon(DaemonClient):
    """Answers every route from its fields; `calls` records the actions asked of it."""

    def __init__(self, *views: RunView) -> None:
        super().__init__(f"/tmp/qwen-tui-test-{os.getpid()}.sock", timeout=1.0)
        self.views: dict[str, RunView] = {v.name: v for v in views}
        self.statuses: dict[str, Status] = {}
        self.histories: dict[str, RunHistory] = {}
        self.diagnoses: dict[str, Diagnosis] = {}
        self.summaries: dict[str, ResourceSummary] = {}
        self.series: dict[str, RunResources] = {}
        self.series_asked: list[tuple[str, int | None]] = []  # every resources() call: (run, points)
        self.checkpoints: dict[str, list[CheckpointView]] = {}
        self.samples: list[ResourceSample] = [ResourceSample(time.time(), 12.0, 1, 2)]
        self.sampler = SamplerHealth(5.0, time.time(), True)
        self.surface_list = SurfaceList([Surface("lab", "mechanism", "bounded lab runs")], "/state/surfaces.json")
        self.audit_entries: list[AuditEntry] = []
        self.roots = BindRootsView([BindRootStatus("/srv/scratch", "", True)])
        self.gpu = GpuStatus()
        self.disk_view = DiskView()
        self.probe_view = ProbeView([ProbeResult("/srv/scratch", True, "a container wrote through /srv/scratch")])
        self.fail: dict[str, DaemonError] = {}
        self.up = True
        self.polls = 0
        self.calls: list[tuple[str, str]] = []

    def set(self, name: str, **changes: object) -> None:
        self.views[name] = msgspec.structs.replace(self.views[name], **changes)

    def _route(self, route: str) -> None:
        if not self.up:
            raise DaemonError(0, f"daemon not reachable at {self.socket_path} (scripted)")
        if route in self.fail:
            raise self.fail[route]

    def _named(self, name: str) -> RunView:
        if name not in self.views:
            raise DaemonError(404, f"no run named {name!r}")
        return self.views[name]

    # -- reads -----------------------------------------------------------------

    def runs(self) -> RunList:
        self._route("runs")
        self.polls += 1
        return RunList(list(self.views.values()))

    def host(self) -> HostView:
        self._route("host")
        return HostView(self.sampler, self.samples[-1] if self.samples else None)

    def run(self, name: str) -> RunDetail:
        self._route("run")
        view = self._named(name)
        summary = ResourceSummary(3, time.time() - 10, time.time(), {"cpu_percent": MetricStats(3, 1, 1, 1, 1)})
        summary = self.summaries.get(name, summary)
        return RunDetail(view, self.statuses.get(name), summary, checkpoints=self.checkpoints.get(name, []))

    def resources(self, name: str, points: int | None = None) -> RunResources:
        self._route("resources")
        self._named(name)
        self.series_asked.append((name, points))
        return self.series.get(name, RunResources(name, 5.0, points or 120, 0))

    def history(self, name: str) -> RunHistory:
        self._route("history")
        self._named(name)
        return self.histories.get(name, RunHistory(name))

    def diagnosis(self, name: str) -> Diagnosis:
        self._route("diagnosis")
        if name not in self.diagnoses:
            raise DaemonError(404, f"run {name!r} has no diagnosis")
        return self.diagnoses[name]

    def surfaces(self) -> SurfaceList:
        self._route("surfaces")
        return self.surface_list

    def audit(self) -> AuditList:
        self._route("audit")
        return AuditList(self.audit_entries)

    def bind_roots(self) -> BindRootsView:
        self._route("bind_roots")
        return self.roots

    def gpu_status(self) -> GpuStatus:
        self._route("gpu")
        return self.gpu

    def disk(self) -> DiskView:
        self._route("disk")
        return self.disk_view

    # -- actions ---------------------------------------------------------------

    def stop(self, name: str) -> RunView:
        self._route("stop")
        self.calls.append(("stop", name))
        self.set(name, state="stopped", health="ended")
        return self.views[name]

    def resume(self, name: str) -> RunView:
        self._route("resume")
        self.calls.append(("resume", name))
        self.set(name, state="launching", health="waiting", nonce="n2")
        return self.views[name]

    def diagnose(self, name: str, step: int | None = None) -> RunView:
        self._route("diagnose")
        self.calls.append(("diagnose", f"{name}@{step}"))
        job = run_view(f"{name}-diag", kind="diagnose", parent=name, state="launching", health="waiting", step=None)
        self.views[job.name] = job
        return job

    def launch(  # type: ignore[override]  # the scripted daemon takes what the dashboard sends
        self, spec: RunSpec | None = None, spec_path: str | None = None, kind: JobKind = "train", **_: object
    ) -> RunView:
        self._route("launch")
        self.calls.append(("start" if kind == "train" else f"start {kind}", str(spec_path)))
        view = run_view("launched", state="launching", health="waiting", step=None, kind=kind)
        self.views[view.name] = view
        return view

    def probe(self) -> ProbeView:
        self._route("probe")
        self.calls.append(("probe", ""))
        return self.probe_view


def make_app(daemon: ScriptedDaemon, **kwargs: object) -> HemmaApp:
    app = HemmaApp(daemon.socket_path, refresh_interval=0.1, **kwargs)  # type: ignore[arg-type]
    app.client = daemon
    return app


async def until(pilot: Pilot[None], predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.05)


def plain(renderable: object, width: int = 160) -> str:
    """What a Static shows, as text (its content is a Rich renderable or a string)."""
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


def notes(app: HemmaApp) -> list[str]:
    return [n.message for n in app._notifications]


def notified(app: HemmaApp, *words: str) -> bool:
    return any(all(word in message for word in words) for message in notes(app))
