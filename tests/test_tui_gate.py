"""The gate screen, driven by keys against the scripted daemon.

`g` on a run (its detail, or the runs table) opens its promotion gate; the
screen shows the verdict criterion by criterion, says plainly when there is
none yet or it cannot be read, and `g` there runs the gate: refused without
asking on a run that has not ended, asked first otherwise, then reported.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from qwen_daemon.protocol import GateVerdict, RunView
from qwen_daemon.protocol.client import DaemonError
from qwen_tui.app import HemmaApp
from qwen_tui.screens.confirm import ConfirmScreen
from qwen_tui.screens.detail import RunDetailScreen
from qwen_tui.screens.gate import GateScreen
from qwen_tui.screens.runs import RunsScreen
from qwen_tui.widgets.runs_table import RunsTable
from tests.gate_fake import make_verdict
from tests.test_tui_harness import SIZE, ScriptedDaemon, make_app, notified, plain, run_view, until

pytestmark = pytest.mark.asyncio


class GateDaemon(ScriptedDaemon):
    """The scripted daemon with the gate routes: verdicts by run, and a gate job per POST."""

    def __init__(self, *views: RunView) -> None:
        super().__init__(*views)
        self.verdicts: dict[str, GateVerdict] = {}

    def verdict(self, name: str) -> GateVerdict:
        self._route("verdict")
        if name not in self.verdicts:
            raise DaemonError(404, f"no gate verdict yet: POST /runs/{name}/gate")
        return self.verdicts[name]

    def gate(self, name: str, asr: str | None = None, thresholds: str | None = None,
             checkpoint: int | None = None) -> RunView:
        self._route("gate")
        self.calls.append(("gate", name))
        job = run_view(f"{name}.gate", kind="gate", parent=name, state="launching", health="waiting", step=None)
        self.views[job.name] = job
        return job


@pytest.fixture
def daemon() -> GateDaemon:
    return GateDaemon(
        run_view("done", state="completed", health="ended", step=100),
        run_view("live"),
    )


def text_of(app: HemmaApp, selector: str) -> str:
    return plain(app.screen.query_one(selector, Static).content)


async def on_gate(pilot: Pilot[None], app: HemmaApp, run: str) -> None:
    await until(pilot, lambda: isinstance(app.screen, GateScreen) and app.screen.run_name == run)
    await until(pilot, lambda: "loading" not in text_of(app, "#overall"))


async def test_g_on_a_run_shows_its_verdict_criterion_by_criterion(daemon: GateDaemon) -> None:
    daemon.verdicts["done"] = make_verdict(Path("/srv/runs/done"), 40, passed=False)
    app = make_app(daemon, initial_run="done")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        await pilot.press("g")
        await on_gate(pilot, app, "done")
        overall = text_of(app, "#overall")
        assert "NOT PASSED" in overall and "1 of 9 criteria failed: intelligibility" in overall
        assert "step 40" in overall and "/srv/models/base" in overall and "ago" in overall
        assert app.screen.query_one("#overall").has_class("-failed")
        criteria = text_of(app, "#criteria")
        rows = [line for line in criteria.splitlines() if line.strip()]
        names = ["ended_cleanly", "eval_beats_base", "speaker_similarity", "intelligibility", "speaking_rate",
                 "end_of_speech", "quality", "resource_evidence", "provenance"]
        assert [row.split()[0] for row in rows[1:]] == names  # the gate's order, one row each
        failing = rows[1 + names.index("intelligibility")]
        assert "✗ FAIL" in failing and "0.3000" in failing and "no ASR model given" in failing
        assert all("✓ pass" in row for row in rows[1:] if row.split()[0] != "intelligibility")
        assert "none has run for done" in text_of(app, "#job")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen))


async def test_a_passed_verdict_and_a_criterion_it_leaves_out(daemon: GateDaemon) -> None:
    full = make_verdict(Path("/srv/runs/done"), 500, passed=True)
    daemon.verdicts["done"] = full
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.screen.query_one(RunsTable).row_count == 2)
        await pilot.press("g")
        await on_gate(pilot, app, "done")
        assert "PASSED" in text_of(app, "#overall") and "NOT PASSED" not in text_of(app, "#overall")
        assert app.screen.query_one("#overall").has_class("-passed")
        daemon.verdicts["done"] = msgspec.structs.replace(full, criteria=full.criteria[:5])
        await until(pilot, lambda: "✗ not judged" in text_of(app, "#criteria"))
        row = next(line for line in text_of(app, "#criteria").splitlines() if line.split()[:1] == ["provenance"])
        assert "the verdict does not list this criterion" in row


async def test_no_verdict_says_so_and_g_runs_the_gate_after_asking(daemon: GateDaemon) -> None:
    app = make_app(daemon, initial_run="done")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        await pilot.press("g")
        await on_gate(pilot, app, "done")
        overall = text_of(app, "#overall")
        assert "no gate verdict yet for done" in overall and "press g to run the promotion gate" in overall
        assert "daemon: no gate verdict yet: POST /runs/done/gate" in overall
        assert not any(app.screen.query_one(s).display for s in ("#criteria", "#judges", "#speakers"))
        assert not app.screen.query_one("#banner").display  # a missing verdict is no connection problem
        await pilot.press("g")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen)
        assert "Run the promotion gate on done?" in confirm.question and "done.gate" in confirm.question
        await pilot.press("n")
        await until(pilot, lambda: notified(app, "gate done: cancelled, nothing was sent"))
        assert daemon.calls == [] and isinstance(app.screen, GateScreen)
        await pilot.press("g", "y")
        await until(pilot, lambda: notified(app, "gate job done.gate started for done", "launching"))
        assert daemon.calls == [("gate", "done")]
        await until(pilot, lambda: "judging now" in text_of(app, "#job"))
        daemon.set("done.gate", state="completed", health="ended", message="gate passed: all 6 criteria")
        daemon.verdicts["done"] = make_verdict(Path("/srv/runs/done"), 100, passed=True)
        await until(pilot, lambda: app.screen.query_one("#criteria").display)
        assert "gate passed: all 6 criteria" in text_of(app, "#job") and "step 100" in text_of(app, "#overall")


async def test_the_gate_of_an_active_run_is_refused_without_asking(daemon: GateDaemon) -> None:
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.screen.query_one(RunsTable).row_count == 2)
        await pilot.press("down", "g")
        await on_gate(pilot, app, "live")
        assert "the gate runs once the run has ended" in text_of(app, "#job")
        await pilot.press("g")
        await until(pilot, lambda: notified(app, "live is running: a run is gated only once it has ended"))
        assert isinstance(app.screen, GateScreen) and daemon.calls == []


async def test_a_corrupt_verdict_and_a_refused_gate_are_shown_as_the_daemon_said(daemon: GateDaemon) -> None:
    daemon.fail["verdict"] = DaemonError(422, "/srv/runs/done/gate/verdict.json: unreadable gate verdict (bad)")
    daemon.fail["gate"] = DaemonError(409, "refused by rule gate-ended-run: run 'done' is running")
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.screen.query_one(RunsTable).row_count == 2)
        await pilot.press("g")
        await on_gate(pilot, app, "done")
        overall = text_of(app, "#overall")
        assert "cannot be shown: /srv/runs/done/gate/verdict.json: unreadable gate verdict" in overall
        assert "press g to run the gate again" in overall
        await pilot.press("g", "y")
        await until(pilot, lambda: notified(app, "could not start the gate on done: refused by rule gate-ended-run"))
        error = next(n for n in app._notifications if "could not start the gate" in n.message)
        assert error.severity == "error"


async def test_a_gate_job_row_opens_its_runs_gate(daemon: GateDaemon) -> None:
    daemon.views["done.gate"] = run_view("done.gate", kind="gate", parent="done", state="completed",
                                         health="ended", message="gate did not pass: intelligibility failed")
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(RunsTable)
        await until(pilot, lambda: table.row_count == 3)
        assert table.get_cell("done.gate", "kind").plain == "gate of done"
        while table.selected_name != "done.gate":
            await pilot.press("down")
        await pilot.press("g")
        await on_gate(pilot, app, "done")
        assert "gate did not pass: intelligibility failed" in text_of(app, "#job")
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen))


async def test_the_gate_screen_names_its_judges_and_shows_each_held_out_speaker(daemon: GateDaemon) -> None:
    daemon.verdicts["done"] = make_verdict(Path("/srv/runs/done"), 40, passed=True)
    app = make_app(daemon, initial_run="done")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        await pilot.press("g")
        await on_gate(pilot, app, "done")
        await until(pilot, lambda: app.screen.query_one("#judges").display)
        judges = text_of(app, "#judges")
        assert "ASR" in judges and "whisper" in judges and "/srv/models/kb-whisper-large" in judges
        assert "speaker verifier" in judges and "resemblyzer" in judges and "second figure" in judges
        assert app.screen.query_one("#judges").border_title == "judges"
        rows = {line.split()[0]: line for line in text_of(app, "#speakers").splitlines() if line.strip()}
        assert "✗ 0.410" in rows["fleurs:1002"]  # under the verdict's 0.75: marked
        assert "0.840" in rows["fleurs:1001"] and "✗" not in rows["fleurs:1001"]
        before = msgspec.json.decode((Path(__file__).parent / "gate_verdict_before_judges.json").read_bytes(),
                                     type=GateVerdict)
        daemon.verdicts["done"] = before
        await until(pilot, lambda: "not recorded" in text_of(app, "#judges"))
        assert "written before the gate recorded its judges" in text_of(app, "#judges")
        assert "not recorded" in text_of(app, "#speakers") and app.screen.query_one("#speakers").display
