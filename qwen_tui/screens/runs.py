"""The main screen: every run the daemon knows, one row each.

The table follows the app's latest snapshot; the screen only turns keys into
requests (open the run under the cursor, open its promotion gate, or any
verb offered on "runs" in actions.VERBS: stop, resume, diagnose) for the app,
which owns the daemon client. Start, the lanes
board and the host are the app's own keys, available from every screen.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

from qwen_tui.actions import VerbName, bindings
from qwen_tui.messages import ActionRequested, OpenGate, OpenRun
from qwen_tui.poller import Snapshot
from qwen_tui.screens.base import DashboardScreen
from qwen_tui.widgets.banner import ConnectionBanner
from qwen_tui.widgets.host_bar import HostBar
from qwen_tui.widgets.runs_table import RunsTable


class RunsScreen(DashboardScreen):
    CSS_PATH = "runs.tcss"
    BINDINGS = [
        Binding("enter", "open", "Open"),
        *bindings("runs"),
        Binding("g", "gate", "Gate"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield ConnectionBanner(id="banner")
        yield Static("", id="empty")
        yield RunsTable(id="runs")
        yield HostBar(id="host")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(RunsTable).focus()
        self.watch(self.app, "snapshot", self._show, init=True)

    def _show(self, snapshot: Snapshot | None) -> None:
        empty = self.query_one("#empty", Static)
        if snapshot is None:
            empty.update("waiting for the daemon…")
            empty.display = True
            return
        self.query_one(RunsTable).show_runs(snapshot.runs)
        if snapshot.runs:
            empty.display = False
        else:
            empty.update(
                "the daemon has no runs yet: press n to launch a spec file, or use `qwen-daemon launch SPEC` "
                "or `systemctl start qwen-run@NAME`"
            )
            empty.display = True

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(OpenRun(event.row_key.value))

    def action_open(self) -> None:
        name = self.query_one(RunsTable).selected_name
        if name is not None:
            self.post_message(OpenRun(name))

    def action_gate(self) -> None:
        name = self.query_one(RunsTable).selected_name
        if name is None:
            self.notify("no run selected", severity="warning")
            return
        self.post_message(OpenGate(name))

    def action_verb(self, verb: VerbName) -> None:
        name = self.query_one(RunsTable).selected_name
        if name is None:
            self.notify("no run selected", severity="warning")
            return
        self.post_message(ActionRequested(verb, name))
