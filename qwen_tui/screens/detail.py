"""One run in full: registry facts, trusted status, loss curves, resources, events.

The app fetches this run's RunDetail on every poll while the screen is on top
(it asks for `run_name`), so the screen refreshes while the run trains. Each
section is its own widget; this screen only routes the snapshot to them.
"""

from __future__ import annotations

import math

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, Sparkline, Static

from qwen_tui.format import fmt_float
from qwen_tui.history import LossHistory, Series
from qwen_tui.messages import StopRequested
from qwen_tui.poller import Snapshot
from qwen_tui.widgets.banner import ConnectionBanner
from qwen_tui.widgets.events_view import EventsView
from qwen_tui.widgets.host_bar import HostBar
from qwen_tui.widgets.run_facts import RunFactsView
from qwen_tui.widgets.status_view import TrustedStatusView
from qwen_tui.widgets.summary_view import ResourceSummaryView


def series_label(title: str, series: Series) -> Text:
    values = [value for value in series.values() if math.isfinite(value)]
    if not values:
        return Text(f"{title}: no points yet (recorded while the dashboard watches a live run)", style="dim")
    steps = series.steps()
    return Text(
        f"{title}: {len(values)} points, steps {steps[0]}–{steps[-1]}, "
        f"last {fmt_float(values[-1])}, min {fmt_float(min(values))}, max {fmt_float(max(values))}"
    )


class RunDetailScreen(Screen[None]):
    CSS_PATH = "detail.tcss"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("s", "stop", "Stop run"),
    ]

    def __init__(self, run_name: str, history: LossHistory) -> None:
        super().__init__()
        self.run_name = run_name
        self.history = history

    def compose(self) -> ComposeResult:
        yield Header()
        yield ConnectionBanner(id="banner")
        with VerticalScroll(id="detail"):
            yield Static("", id="detail-error")
            yield RunFactsView(Text("loading…", style="dim"), id="facts")
            with Vertical(id="curves"):
                yield Label("", id="loss-label")
                yield Sparkline([], id="loss-spark")
                yield Label("", id="eval-label")
                yield Sparkline([], id="eval-spark")
            yield TrustedStatusView(Text("loading…", style="dim"), id="status")
            yield ResourceSummaryView(Text("loading…", style="dim"), id="summary")
            yield EventsView(Text("loading…", style="dim"), id="events")
        yield HostBar(id="host")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.run_name
        self.query_one("#facts").border_title = "run"
        self.query_one("#curves").border_title = "loss"
        self.query_one("#status").border_title = "trusted status"
        self.query_one("#summary").border_title = "resources"
        self.query_one("#events").border_title = "events"
        self.query_one("#detail-error").display = False
        self.query_one("#detail").focus()
        self.watch(self.app, "snapshot", self._show, init=True)

    def _show(self, snapshot: Snapshot | None) -> None:
        if snapshot is None:
            return
        error = self.query_one("#detail-error", Static)
        view = snapshot.run(self.run_name)
        if snapshot.detail_name == self.run_name and snapshot.detail_error:
            error.update(Text(f"cannot show run {self.run_name!r}: {snapshot.detail_error}", style="bold red"))
            error.display = True
        else:
            error.display = False
        detail = snapshot.detail if snapshot.detail_name == self.run_name else None
        if detail is not None:
            view = detail.run
            self.query_one(TrustedStatusView).show(detail.status, view)
            self.query_one(ResourceSummaryView).show(detail.summary)
            trainer_events = detail.status.events if detail.status is not None else []
            self.query_one(EventsView).show(detail.events, trainer_events)
        if view is not None or snapshot.detail_name == self.run_name:
            self.query_one(RunFactsView).show(view)
        self._show_curves()

    def _show_curves(self) -> None:
        loss = self.history.loss(self.run_name)
        eval_loss = self.history.eval_loss(self.run_name)
        self.query_one("#loss-label", Label).update(series_label("train loss", loss))
        self.query_one("#eval-label", Label).update(series_label("eval loss", eval_loss))
        for spark_id, series in (("#loss-spark", loss), ("#eval-spark", eval_loss)):
            spark = self.query_one(spark_id, Sparkline)
            spark.data = [value for value in series.values() if math.isfinite(value)]
            spark.display = bool(spark.data)  # an empty sparkline draws a flat line, which reads as data

    def action_stop(self) -> None:
        self.post_message(StopRequested(self.run_name))
