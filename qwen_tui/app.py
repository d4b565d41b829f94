"""HemmaApp: the dashboard, a client of the daemon's Unix-socket API.

The app owns the one daemon client. It polls on an interval in a worker thread
(the client blocks; the UI must not), for the runs, the host and whatever the
screen on top wants (a run's detail and history, its gate verdict, the
surfaces board, the bind roots), publishes each result as the reactive
`snapshot`, and every screen and widget binds to that. When the daemon cannot be reached the `connection`
reactive carries the client's message for the banner, the figures on screen
are dimmed, and polling simply continues.

Verbs go through here too: a screen asks (ActionRequested), the app refuses
what cannot apply, confirms the rest with a modal, calls the daemon in a
worker, and says what happened. All of it is read from the verb's entry in
qwen_tui.actions.VERBS, as are the keys; the app's own are the verbs offered
anywhere ("app": start), whose target is a spec file asked for first.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec
from textual import work
from textual.app import App
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import ModalScreen, Screen
from textual.worker import Worker, WorkerState

from qwen_daemon.protocol import JobKind, kind_info
from qwen_daemon.protocol.client import DaemonClient, DaemonError
from qwen_tui.actions import Outcome, VerbName, bindings, perform, question, refusal, report
from qwen_tui.history import HostHistory, LossHistory
from qwen_tui.messages import ActionRequested, OpenGate, OpenRun
from qwen_tui.poller import RESOURCES_EVERY_S, Cadence, Connection, Snapshot, Wants, fetch_snapshot, paced
from qwen_tui.screens.base import DashboardScreen
from qwen_tui.screens.confirm import ConfirmScreen
from qwen_tui.screens.detail import RunDetailScreen
from qwen_tui.screens.gate import GateScreen
from qwen_tui.screens.host import HostScreen
from qwen_tui.screens.lanes import LanesScreen
from qwen_tui.screens.launch import LaunchChoice, LaunchScreen
from qwen_tui.screens.runs import RunsScreen

POLL_GROUP = "poll"
ACTION_GROUP = "action"


@dataclass(frozen=True)
class PollFailure:
    """A poll that did not produce a snapshot, and the message to show for it."""

    error: str


class HemmaApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "qwen-hemma"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("r", "poll_now", "Refresh"),
        Binding("l", "lanes", "Lanes"),
        Binding("h", "host", "Host"),
        *bindings("app"),
    ]

    snapshot: reactive[Snapshot | None] = reactive(None, always_update=True)
    connection: reactive[Connection] = reactive(Connection(), always_update=True)
    outcomes: reactive[Mapping[VerbName, Outcome]] = reactive(dict, always_update=True)  # each verb's last

    def __init__(
        self,
        socket_path: Path | str,
        refresh_interval: float = 1.0,
        initial_run: str | None = None,
        request_timeout: float = 5.0,
    ) -> None:
        super().__init__()
        if refresh_interval <= 0:
            raise ValueError(f"refresh interval must be positive, got {refresh_interval}")
        self.client = DaemonClient(socket_path, timeout=request_timeout)
        self.refresh_interval = refresh_interval
        self.initial_run = initial_run
        self.history = LossHistory()
        self.host_history = HostHistory()
        self.resource_cadence = Cadence(RESOURCES_EVERY_S)
        self._poll_in_flight = False
        self._poll_again = False
        self.set_reactive(HemmaApp.connection, Connection(interval=refresh_interval))

    def get_default_screen(self) -> Screen[None]:
        return RunsScreen()

    def on_mount(self) -> None:
        self.sub_title = self.client.socket_path
        if self.initial_run is not None:
            self.push_screen(RunDetailScreen(self.initial_run, self.history))
        self.set_interval(self.refresh_interval, self.poll)
        self.poll()

    # -- polling ---------------------------------------------------------------

    def poll(self) -> None:
        """Start a poll unless one is running; then one more follows it."""
        if self._poll_in_flight:
            self._poll_again = True
            return
        self._poll_in_flight = True
        self._poll_worker(paced(self._wants(), self.resource_cadence, time.monotonic()))

    def _wants(self) -> Wants:
        """What the full screen on top shows, also while a modal sits on it."""
        for screen in reversed(self.screen_stack):
            if isinstance(screen, ModalScreen):
                continue
            return screen.wants() if isinstance(screen, DashboardScreen) else Wants()
        return Wants()

    @work(thread=True, group=POLL_GROUP)
    def _poll_worker(self, wants: Wants) -> Snapshot | PollFailure:
        try:
            return fetch_snapshot(self.client, wants)
        except DaemonError as exc:
            return PollFailure(str(exc))
        except msgspec.MsgspecError as exc:
            return PollFailure(f"the daemon sent a reply this dashboard cannot read: {exc}")

    def _apply_poll(self, outcome: Snapshot | PollFailure) -> None:
        if isinstance(outcome, PollFailure):
            self.connection = Connection(outcome.error, self.connection.last_ok, self.refresh_interval)
            self.add_class("-disconnected")
            return
        self.history.record(outcome.runs)
        if outcome.detail is not None:
            self.history.record_detail(outcome.detail)
        if outcome.history is not None:
            self.history.record_history(outcome.history)
        if outcome.host is not None:
            self.host_history.record(outcome.host.sample)
        self.remove_class("-disconnected")
        self.connection = Connection(None, outcome.fetched_at, self.refresh_interval)
        self.snapshot = outcome

    def action_poll_now(self) -> None:
        self.poll()

    # -- navigation ------------------------------------------------------------

    def on_open_run(self, message: OpenRun) -> None:
        self.push_screen(RunDetailScreen(message.run_name, self.history))
        self.poll()

    def on_open_gate(self, message: OpenGate) -> None:
        """The gate of the run itself: a diagnose or gate job's run is its parent."""
        name = message.run_name
        view = self.snapshot.run(name) if self.snapshot is not None else None
        if view is not None and kind_info(view.kind).child and view.parent:
            name = view.parent
        if not (isinstance(self.screen, GateScreen) and self.screen.run_name == name):
            self.push_screen(GateScreen(name))
            self.poll()

    def action_lanes(self) -> None:
        if not isinstance(self.screen, LanesScreen):
            self.push_screen(LanesScreen())
            self.poll()

    def action_host(self) -> None:
        if not isinstance(self.screen, HostScreen):
            self.push_screen(HostScreen(self.host_history))
            self.poll()

    # -- actions ---------------------------------------------------------------

    def action_verb(self, verb: VerbName) -> None:
        """A verb offered anywhere: ask for a spec path and the job kind, then confirm it on that."""

        def typed(choice: LaunchChoice | None) -> None:
            if choice is not None:
                self._confirm(verb, choice.path, choice.kind)

        self.push_screen(LaunchScreen(), typed)

    def on_action_requested(self, message: ActionRequested) -> None:
        verb, target = message.verb, message.target
        view = self.snapshot.run(target) if self.snapshot is not None else None
        reason = refusal(verb, target, view)
        if reason is not None:
            self.notify(reason, severity="warning", markup=False)
            return
        self._confirm(verb, target)

    def _confirm(self, verb: VerbName, target: str, kind: JobKind = "train") -> None:
        asked = question(verb, target, kind)

        def answered(yes: bool | None) -> None:
            if yes:
                self.notify(f"asking the daemon to {verb} {target}…", markup=False)
                self._action_worker(verb, target, kind)
            else:
                self.notify(f"{verb} {target}: cancelled, nothing was sent", markup=False)

        self.push_screen(ConfirmScreen(asked.text, yes_label=asked.yes, no_label=asked.no), answered)

    @work(thread=True, group=ACTION_GROUP)
    def _action_worker(self, verb: VerbName, target: str, kind: JobKind) -> Outcome:
        return perform(self.client, verb, target, kind)

    def _report(self, outcome: Outcome) -> None:
        text, severity = report(outcome)
        self.notify(text, severity=severity, timeout=10 if severity == "error" else 5, markup=False)
        self.outcomes = {**self.outcomes, outcome.verb: outcome}
        self.poll()

    # -- worker results --------------------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group == POLL_GROUP and event.state in (WorkerState.SUCCESS, WorkerState.CANCELLED):
            self._poll_in_flight = False
            if isinstance(worker.result, Snapshot | PollFailure):
                self._apply_poll(worker.result)
            if self._poll_again:
                self._poll_again = False
                self.poll()
        elif worker.group == ACTION_GROUP and event.state == WorkerState.SUCCESS and isinstance(worker.result, Outcome):
            self._report(worker.result)
