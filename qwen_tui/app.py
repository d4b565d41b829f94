"""HemmaApp: the dashboard, a client of the daemon's Unix-socket API.

The app owns the one DaemonClient. It polls on an interval in a worker thread
(the client blocks; the UI must not), publishes each result as the reactive
`snapshot`, and every screen and widget binds to that. When the daemon cannot
be reached the `connection` reactive carries the client's message for the
banner, the figures on screen are dimmed, and polling simply continues.

Actions that change a run go through here too: a screen asks (StopRequested),
the app confirms with a modal, calls the daemon in a worker, and says what
happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import msgspec
from textual import work
from textual.app import App
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import ModalScreen, Screen
from textual.worker import Worker, WorkerState

from qwen_daemon.client import DaemonClient, DaemonError
from qwen_daemon.protocol import ACTIVE_STATES, RunView
from qwen_tui.history import LossHistory
from qwen_tui.messages import OpenRun, StopRequested
from qwen_tui.poller import Connection, Snapshot, fetch_snapshot
from qwen_tui.screens.confirm import ConfirmScreen
from qwen_tui.screens.detail import RunDetailScreen
from qwen_tui.screens.runs import RunsScreen

POLL_GROUP = "poll"
STOP_GROUP = "stop"


@dataclass(frozen=True)
class PollFailure:
    """A poll that did not produce a snapshot, and the message to show for it."""

    error: str


@dataclass(frozen=True)
class StopOutcome:
    name: str
    view: RunView | None = None
    error: str | None = None


class HemmaApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "qwen-hemma"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("r", "poll_now", "Refresh"),
    ]

    snapshot: reactive[Snapshot | None] = reactive(None, always_update=True)
    connection: reactive[Connection] = reactive(Connection(), always_update=True)

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
        self._poll_worker(self._watched_run())

    def _watched_run(self) -> str | None:
        """The run whose detail is showing, also while a modal sits on top of it."""
        for screen in reversed(self.screen_stack):
            if isinstance(screen, ModalScreen):
                continue
            return screen.run_name if isinstance(screen, RunDetailScreen) else None
        return None

    @work(thread=True, group=POLL_GROUP)
    def _poll_worker(self, detail_name: str | None) -> Snapshot | PollFailure:
        try:
            return fetch_snapshot(self.client, detail_name)
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
        self.remove_class("-disconnected")
        self.connection = Connection(None, outcome.fetched_at, self.refresh_interval)
        self.snapshot = outcome

    def action_poll_now(self) -> None:
        self.poll()

    # -- requests from screens -------------------------------------------------

    def on_open_run(self, message: OpenRun) -> None:
        self.push_screen(RunDetailScreen(message.run_name, self.history))
        self.poll()

    def on_stop_requested(self, message: StopRequested) -> None:
        name = message.run_name
        view = self.snapshot.run(name) if self.snapshot is not None else None
        if view is not None and view.state not in ACTIVE_STATES:
            self.notify(f"{name} is {view.state}: there is nothing to stop", severity="warning", markup=False)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.notify(f"asking the daemon to stop {name}…", markup=False)
                self._stop_worker(name)
            else:
                self.notify(f"{name} left running", markup=False)

        question = (
            f"Stop run {name}?\n\nThe trainer finishes its current step, writes a durable "
            "checkpoint and exits; the daemon forces it only after its stop timeout."
        )
        self.push_screen(ConfirmScreen(question, yes_label="Stop", no_label="Keep running"), answered)

    @work(thread=True, group=STOP_GROUP)
    def _stop_worker(self, name: str) -> StopOutcome:
        try:
            return StopOutcome(name, view=self.client.stop(name))
        except DaemonError as exc:
            return StopOutcome(name, error=str(exc))
        except msgspec.MsgspecError as exc:
            return StopOutcome(name, error=f"unreadable reply from the daemon: {exc}")

    def _report_stop(self, outcome: StopOutcome) -> None:
        if outcome.view is not None:
            self.notify(f"stop requested for {outcome.name}: the daemon reports it {outcome.view.state}", markup=False)
        else:
            self.notify(f"could not stop {outcome.name}: {outcome.error}", severity="error", timeout=10, markup=False)
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
        elif (
            worker.group == STOP_GROUP and event.state == WorkerState.SUCCESS and isinstance(worker.result, StopOutcome)
        ):
            self._report_stop(worker.result)
