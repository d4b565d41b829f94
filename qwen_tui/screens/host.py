"""The host screen (key `h`): sampler liveness, live resources, per-run usage, the shared GPU, disk space, bind roots.

The poll brings /host every time and /bind-roots, /gpu and /disk while this screen is on top;
the sparklines are drawn from the app's HostHistory. `p` asks the app to probe
the bind roots (after confirming: it starts containers); the outcome arrives
among the app's `outcomes` and stays shown here with its time.
"""

from __future__ import annotations

from collections.abc import Mapping

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static

from qwen_tui.actions import Outcome, VerbName, bindings
from qwen_tui.history import HostHistory
from qwen_tui.messages import ActionRequested
from qwen_tui.poller import Snapshot, Wants
from qwen_tui.screens.base import DashboardScreen
from qwen_tui.widgets.banner import ConnectionBanner
from qwen_tui.widgets.disk_view import disk_renderable
from qwen_tui.widgets.gpu_view import gpu_renderable
from qwen_tui.widgets.host_view import (
    HostMetrics,
    bind_roots_renderable,
    probe_renderable,
    run_usage_renderable,
    sampler_renderable,
)

PROBE_TARGET = "the bind roots"


class HostScreen(DashboardScreen):
    CSS_PATH = "host.tcss"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        *bindings("host"),
    ]

    def __init__(self, host_history: HostHistory) -> None:
        super().__init__()
        self.host_history = host_history
        self._probe: Outcome | None = None

    def wants(self) -> Wants:
        return Wants(bind_roots=True, gpu=True, disk=True)

    def compose(self) -> ComposeResult:
        loading = Text("loading…", style="dim")
        yield Header()
        yield ConnectionBanner(id="banner")
        with VerticalScroll(id="hostpanel"):
            yield Static("", id="host-error")
            yield Static(loading, id="sampler")
            yield HostMetrics(id="metrics")
            yield Static(loading, id="usage")
            yield Static(loading, id="gpu")
            yield Static(loading, id="disk")
            yield Static(loading, id="roots")
            yield Static(probe_renderable(None, None), id="probe")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "host"
        titles = {"#sampler": "sampler", "#metrics": "now", "#usage": "runs on this host", "#gpu": "shared GPU",
                  "#disk": "disk space", "#roots": "bind roots", "#probe": "bind-root probe"}  # fmt: skip
        for selector, title in titles.items():
            self.query_one(selector).border_title = title
        self.query_one("#host-error").display = False
        self.query_one("#hostpanel").focus()
        self.watch(self.app, "snapshot", self._show, init=True)
        self.watch(self.app, "outcomes", self._show_probe, init=True)

    def _show(self, snapshot: Snapshot | None) -> None:
        if snapshot is None:
            return
        error = self.query_one("#host-error", Static)
        problems = [f"/host: {snapshot.host_error}"] if snapshot.host_error else []
        if snapshot.bind_roots_error:
            problems.append(f"/bind-roots: {snapshot.bind_roots_error}")
        if snapshot.gpu_error:
            problems.append(f"/gpu: {snapshot.gpu_error}")
        if snapshot.disk_error:
            problems.append(f"/disk: {snapshot.disk_error}")
        error.display = bool(problems)
        error.update(Text("the daemon could not answer " + "; ".join(problems), style="bold red"))
        host = snapshot.host
        if host is not None:
            self.query_one("#sampler", Static).update(sampler_renderable(host.sampler))
            self.query_one("#usage", Static).update(run_usage_renderable(host.sample))
        self.query_one(HostMetrics).show(self.host_history.samples())
        if snapshot.bind_roots is not None:
            self.query_one("#roots", Static).update(bind_roots_renderable(snapshot.bind_roots))
        if snapshot.gpu is not None:
            self.query_one("#gpu", Static).update(gpu_renderable(snapshot.gpu))
        if snapshot.disk is not None:
            self.query_one("#disk", Static).update(disk_renderable(snapshot.disk))
        self._render_probe()  # its age moves on

    def _show_probe(self, outcomes: Mapping[VerbName, Outcome]) -> None:
        self._probe = outcomes.get("probe")
        self._render_probe()

    def _render_probe(self) -> None:
        at = self._probe.finished_at if self._probe is not None else None
        self.query_one("#probe", Static).update(probe_renderable(self._probe, at))

    def action_verb(self, verb: VerbName) -> None:
        self.post_message(ActionRequested(verb, PROBE_TARGET))
