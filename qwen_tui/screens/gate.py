"""The gate screen (key `g` on a run): its promotion-gate verdict, criterion by criterion.

Below the criteria: the judges the gate used (ASR, speaker verifier, the base
encoder's second figure) and one row per held-out speaker
(widgets/gate_judges_view.py), since an operator trusts a verdict only as far
as its judges, and a mean can hide one voice the model lost.

While this screen is on top the poll fetches the run's verdict (GET
/runs/NAME/gate); the run and its gate job (NAME.gate) come with the run list.
`g` asks the app to run the gate: it confirms first, and the app refuses
without asking on a run that is still active or is no training run. There
being no verdict yet is not an error: the screen says so and offers `g`.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static

from qwen_daemon.protocol import gate_name
from qwen_tui.actions import VerbName, bindings
from qwen_tui.messages import ActionRequested
from qwen_tui.poller import Snapshot, Wants
from qwen_tui.screens.base import DashboardScreen
from qwen_tui.widgets.banner import ConnectionBanner
from qwen_tui.widgets.gate_judges_view import judges_renderable, speakers_renderable
from qwen_tui.widgets.host_bar import HostBar
from qwen_tui.widgets.verdict_view import (
    criteria_renderable,
    gate_job_renderable,
    no_verdict_renderable,
    overall_renderable,
)

TITLES: dict[str, str] = {"#overall": "verdict", "#criteria": "criteria", "#judges": "judges",
                          "#speakers": "per held-out speaker", "#job": "gate job"}
VERDICT_PANELS = ("#criteria", "#judges", "#speakers")  # shown only while there is a verdict


class GateScreen(DashboardScreen):
    CSS_PATH = "gate.tcss"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        *bindings("gate"),
    ]

    def __init__(self, run_name: str) -> None:
        super().__init__()
        self.run_name = run_name

    def wants(self) -> Wants:
        return Wants(gate=self.run_name)

    def compose(self) -> ComposeResult:
        loading = Text("loading…", style="dim")
        yield Header()
        yield ConnectionBanner(id="banner")
        with VerticalScroll(id="gatepanel"):
            yield Static(loading, id="overall")
            yield Static("", id="criteria")
            yield Static("", id="judges")
            yield Static("", id="speakers")
            yield Static(loading, id="job")
        yield HostBar(id="host")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"promotion gate: {self.run_name}"
        for selector, title in TITLES.items():
            self.query_one(selector).border_title = title
        for selector in VERDICT_PANELS:
            self.query_one(selector).display = False
        self.query_one("#gatepanel").focus()
        self.watch(self.app, "snapshot", self._show, init=True)

    def _show(self, snapshot: Snapshot | None) -> None:
        if snapshot is None:
            return
        job = snapshot.run(gate_name(self.run_name))
        self.query_one("#job", Static).update(gate_job_renderable(self.run_name, snapshot.run(self.run_name), job))
        if snapshot.gate_name != self.run_name:
            return  # a poll made for another screen: its verdict is not this run's
        overall = self.query_one("#overall", Static)
        verdict = snapshot.verdict
        overall.set_class(verdict is not None and verdict.passed, "-passed")
        overall.set_class(verdict is None or not verdict.passed, "-failed")
        for selector in VERDICT_PANELS:
            self.query_one(selector).display = verdict is not None
        if verdict is None:
            overall.update(no_verdict_renderable(self.run_name, snapshot.verdict_missing, snapshot.verdict_error))
            return
        overall.update(overall_renderable(verdict, snapshot.fetched_at))
        self.query_one("#criteria", Static).update(criteria_renderable(verdict))
        self.query_one("#judges", Static).update(judges_renderable(verdict))
        self.query_one("#speakers", Static).update(speakers_renderable(verdict))

    def action_verb(self, verb: VerbName) -> None:
        self.post_message(ActionRequested(verb, self.run_name))
