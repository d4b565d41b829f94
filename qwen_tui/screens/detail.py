"""One run in full: facts, curves, listening scores, trusted status, non-finite diagnosis, resources, checkpoints,
events.

The app fetches this run's RunDetail (with its kept checkpoints), its history
and (where one can exist) its diagnosis on every poll while the screen is on
top, so the screen follows the run while it trains; its resource series comes
every few seconds (poller.paced), in as many points as the screen has columns
for. Each section is its own widget; this screen only routes the snapshot to
them and turns keys into actions on this run; `g` opens the run's promotion gate.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static

from qwen_daemon.protocol import DEFAULT_POINTS, RunView, kind_info, score_name
from qwen_tui.actions import VerbName, bindings
from qwen_tui.history import LossHistory
from qwen_tui.messages import ActionRequested, OpenGate
from qwen_tui.poller import Snapshot, Wants
from qwen_tui.screens.base import DashboardScreen
from qwen_tui.widgets.banner import ConnectionBanner
from qwen_tui.widgets.checkpoints_view import CheckpointsView
from qwen_tui.widgets.diagnosis_view import DiagnosisView
from qwen_tui.widgets.events_view import EventsView
from qwen_tui.widgets.host_bar import HostBar
from qwen_tui.widgets.loss_curves import LossCurves
from qwen_tui.widgets.resource_series_view import LABEL_WIDTH, ResourceSeriesView
from qwen_tui.widgets.run_facts import RunFactsView
from qwen_tui.widgets.scores_view import ScoresView
from qwen_tui.widgets.status_view import TrustedStatusView
from qwen_tui.widgets.summary_view import ResourceSummaryView

TITLES: dict[str, str] = {
    "#facts": "run",
    "#curves": "loss",
    "#scores": "listening scores",
    "#status": "trusted status",
    "#diagnosis": "non-finite",
    "#series": "resources over time",
    "#summary": "resources",
    "#checkpoints": "checkpoints kept",
    "#events": "events",
}
MIN_POINTS = 20
_CHROME = LABEL_WIDTH + 8  # the label column, the panel's border and padding, the scrollbar


class RunDetailScreen(DashboardScreen):
    CSS_PATH = "detail.tcss"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        *bindings("detail"),
        Binding("g", "gate", "Gate"),
    ]

    def __init__(self, run_name: str, history: LossHistory) -> None:
        super().__init__()
        self.run_name = run_name
        self.history = history

    def wants(self) -> Wants:
        return Wants(detail=self.run_name, resources=self.run_name, resource_points=self.series_points())

    def series_points(self) -> int:
        """One point per column the sparklines have (at most the daemon's default)."""
        width = self.size.width
        if width <= 0:
            return DEFAULT_POINTS
        return max(MIN_POINTS, min(DEFAULT_POINTS, width - _CHROME))

    def compose(self) -> ComposeResult:
        loading = Text("loading…", style="dim")
        yield Header()
        yield ConnectionBanner(id="banner")
        with VerticalScroll(id="detail"):
            yield Static("", id="detail-error")
            yield RunFactsView(loading, id="facts")
            yield LossCurves(id="curves")
            yield ScoresView(loading, id="scores")
            yield TrustedStatusView(loading, id="status")
            yield DiagnosisView(loading, id="diagnosis")
            yield ResourceSeriesView(loading, id="series")
            yield ResourceSummaryView(loading, id="summary")
            yield CheckpointsView(loading, id="checkpoints")
            yield EventsView(loading, id="events")
        yield HostBar(id="host")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.run_name
        for selector, title in TITLES.items():
            self.query_one(selector).border_title = title
        self.query_one("#detail-error").display = False
        self.query_one("#detail").focus()
        self.watch(self.app, "snapshot", self._show, init=True)

    def _show(self, snapshot: Snapshot | None) -> None:
        if snapshot is None:
            return
        mine = snapshot.detail_name == self.run_name
        error = self.query_one("#detail-error", Static)
        view = snapshot.run(self.run_name)
        if mine and snapshot.detail_error:
            error.update(Text(f"cannot show run {self.run_name!r}: {snapshot.detail_error}", style="bold red"))
            error.display = True
        else:
            error.display = False
        detail = snapshot.detail if mine else None
        if detail is not None:
            view = detail.run
            self.query_one(TrustedStatusView).show(detail.status, view)
            self.query_one(DiagnosisView).show(detail.status, snapshot.diagnosis, snapshot.diagnosis_error)
            self.query_one(ResourceSummaryView).show(detail.summary)
            self.query_one(ResourceSeriesView).show_summary(detail.summary)
            self.query_one(CheckpointsView).show(detail.checkpoints, detail.checkpoints_error, view)
            trainer_events = detail.status.events if detail.status is not None else []
            self.query_one(EventsView).show(detail.events, trainer_events)
        if snapshot.resources_name == self.run_name:
            self.query_one(ResourceSeriesView).show_series(snapshot.resources, snapshot.resources_error)
        if view is not None or mine:
            self.query_one(RunFactsView).show(view)
        self.query_one(LossCurves).show(self.history, self.run_name, snapshot.history_error if mine else None)
        if mine and (snapshot.history is not None or snapshot.history_error):
            self._show_scores(snapshot, view)

    def _show_scores(self, snapshot: Snapshot, view: RunView | None) -> None:
        """The scores of the run (a child job's: its run's), with the run's scoring job."""
        run = view.parent if view is not None and kind_info(view.kind).child and view.parent else self.run_name
        parent = snapshot.run(run)
        scored = parent.scored if parent is not None else True
        self.query_one(ScoresView).show(snapshot.history, snapshot.history_error, snapshot.run(score_name(run)),
                                        scored)

    def action_verb(self, verb: VerbName) -> None:
        self.post_message(ActionRequested(verb, self.run_name))

    def action_gate(self) -> None:
        self.post_message(OpenGate(self.run_name))
