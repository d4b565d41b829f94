"""The lanes and surfaces board (key `l`): what may be launched where, and who changed it.

Governance lives in the daemon (it refuses a launch and names the rule); this
board shows the same rules ahead of time, with the registry's surfaces grouped
by class, the request lanes with their data policy, and the audit log of class
changes. The poll fetches /surfaces and /surfaces/audit while it is on top.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static

from qwen_tui.poller import Snapshot, Wants
from qwen_tui.screens.base import DashboardScreen
from qwen_tui.widgets.banner import ConnectionBanner
from qwen_tui.widgets.host_bar import HostBar
from qwen_tui.widgets.surfaces_view import audit_renderable, lanes_table, surfaces_renderable


class LanesScreen(DashboardScreen):
    CSS_PATH = "lanes.tcss"
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def wants(self) -> Wants:
        return Wants(surfaces=True)

    def compose(self) -> ComposeResult:
        loading = Text("loading…", style="dim")
        yield Header()
        yield ConnectionBanner(id="banner")
        with VerticalScroll(id="board"):
            yield Static("", id="board-error")
            yield Static(loading, id="lanes")
            yield Static(loading, id="surfaces")
            yield Static(loading, id="audit")
        yield HostBar(id="host")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "lanes and surfaces"
        self.query_one("#lanes").border_title = "request lanes"
        self.query_one("#surfaces").border_title = "surfaces by class"
        self.query_one("#audit").border_title = "class changes (audit log)"
        self.query_one("#board-error").display = False
        self.query_one("#board").focus()
        self.watch(self.app, "snapshot", self._show, init=True)

    def _show(self, snapshot: Snapshot | None) -> None:
        if snapshot is None:
            return
        self.query_one("#lanes", Static).update(lanes_table(snapshot.runs))
        error = self.query_one("#board-error", Static)
        error.display = snapshot.surfaces_error is not None
        if snapshot.surfaces_error is not None:
            error.update(Text(f"the daemon could not give the surfaces: {snapshot.surfaces_error}", style="bold red"))
        if snapshot.surfaces is not None:
            self.query_one("#surfaces", Static).update(surfaces_renderable(snapshot.surfaces, snapshot.runs))
        if snapshot.audit is not None:
            self.query_one("#audit", Static).update(audit_renderable(snapshot.audit))
