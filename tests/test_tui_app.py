"""The dashboard driven by Textual's Pilot, with the daemon's answers scripted.

The app runs unchanged (its real poller in a worker thread, in-place row
updates, navigation, the stop confirmation); only its client is replaced by
tests/test_tui_harness.py's ScriptedDaemon. test_tui_live.py drives the same
app against a real `qwen-daemon serve`.
"""

from __future__ import annotations

import time

import pytest
from textual.widgets import Static

from qwen_daemon.protocol.client import DaemonClient, DaemonError
from qwen_tui import app as app_module
from qwen_tui.app import HemmaApp
from qwen_tui.poller import Snapshot, Wants, fetch_snapshot
from qwen_tui.screens.confirm import ConfirmScreen
from qwen_tui.screens.detail import RunDetailScreen
from qwen_tui.screens.runs import RunsScreen
from qwen_tui.widgets.banner import ConnectionBanner
from qwen_tui.widgets.runs_table import RunsTable
from tests.test_tui_harness import SIZE, ScriptedDaemon, make_app, notified, plain, run_view, until

pytestmark = pytest.mark.asyncio


@pytest.fixture
def daemon() -> ScriptedDaemon:
    return ScriptedDaemon(run_view("alpha"), run_view("beta"), run_view("gamma", state="completed", health="ended"))


def cell(app: HemmaApp, name: str, column: str) -> str:
    table = app.screen_stack[0].query_one(RunsTable)
    value = table.get_cell(name, column)
    return value if isinstance(value, str) else value.plain


def banner(app: HemmaApp) -> ConnectionBanner:
    return app.screen.query_one(ConnectionBanner)


async def test_unreachable_daemon_is_stated_and_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []

    def counting_fetch(client: DaemonClient, wants: Wants | None = None) -> Snapshot:
        calls.append(time.monotonic())
        return fetch_snapshot(client, wants)  # the real client, nobody serving

    monkeypatch.setattr(app_module, "fetch_snapshot", counting_fetch)
    app = HemmaApp("/tmp/qwen-tui-test-nobody.sock", refresh_interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: banner(app).display and len(calls) >= 3)
        text = str(banner(app).content)
        assert "daemon not reachable at /tmp/qwen-tui-test-nobody.sock" in text
        assert "retrying every 0.1s" in text and "no data received yet" in text
        assert app.has_class("-disconnected")


async def test_banner_clears_when_daemon_comes_back(daemon: ScriptedDaemon) -> None:
    daemon.up = False
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: banner(app).display)
        daemon.up = True
        await until(pilot, lambda: not banner(app).display)
        assert app.screen.query_one(RunsTable).row_count == 3
        daemon.up = False
        await until(pilot, lambda: banner(app).display)
        assert "not live" in str(banner(app).content)
        assert app.screen.query_one(RunsTable).row_count == 3  # kept, dimmed, flagged


async def test_rows_update_in_place_and_keep_the_cursor(daemon: ScriptedDaemon) -> None:
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(RunsTable)
        await until(pilot, lambda: table.row_count == 3)
        await pilot.press("down")
        assert table.selected_name == "beta"
        daemon.set("beta", step=57, loss=1.5)
        await until(pilot, lambda: cell(app, "beta", "step") == "57/100")
        assert cell(app, "beta", "loss") == "1.5000"
        assert table.selected_name == "beta"
        daemon.set("alpha", health="stale", stale_reason="heartbeat 130s old")
        await until(pilot, lambda: cell(app, "alpha", "health") == "stale: heartbeat 130s old")
        assert cell(app, "alpha", "step") == "—" and cell(app, "alpha", "eta") == "—"
        del daemon.views["gamma"]
        daemon.views["delta"] = run_view("delta", health="waiting", step=None)
        await until(pilot, lambda: "delta" in table.rows and "gamma" not in table.rows)
        assert table.selected_name == "beta"


async def test_class_column_and_a_kind_column_only_while_a_job_is_listed(daemon: ScriptedDaemon) -> None:
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(RunsTable)
        await until(pilot, lambda: table.row_count == 3)
        assert cell(app, "alpha", "class") == "mechanism" and cell(app, "alpha", "lane") == "single-speaker"
        assert not table.kind_shown
        daemon.views["alpha-diag"] = run_view("alpha-diag", kind="diagnose", parent="alpha")
        await until(pilot, lambda: "alpha-diag" in table.rows)
        assert table.kind_shown
        assert cell(app, "alpha-diag", "kind") == "diagnose of alpha"
        assert cell(app, "alpha", "kind") == "train"
        del daemon.views["alpha-diag"]
        await until(pilot, lambda: "alpha-diag" not in table.rows)
        assert not table.kind_shown


async def test_enter_opens_detail_and_escape_returns(daemon: ScriptedDaemon) -> None:
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.screen.query_one(RunsTable).row_count == 3)
        await pilot.press("down", "enter")
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        assert isinstance(app.screen, RunDetailScreen) and app.screen.run_name == "beta"
        summary = app.screen.query_one("#summary", Static)
        await until(pilot, lambda: "3 samples" in plain(summary.content))
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen))


async def test_run_option_opens_detail_and_unknown_run_is_explained(daemon: ScriptedDaemon) -> None:
    app = make_app(daemon, initial_run="nosuch")
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, RunDetailScreen)
        error = app.screen.query_one("#detail-error", Static)
        await until(pilot, lambda: error.display)
        assert "no run named 'nosuch'" in str(error.content)


async def test_stop_asks_first_then_reports(daemon: ScriptedDaemon) -> None:
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.screen.query_one(RunsTable).row_count == 3)
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen))
        assert daemon.calls == []
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("enter")  # Enter answers the focused, harmless button
        await until(pilot, lambda: isinstance(app.screen, RunsScreen))
        assert daemon.calls == []
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: daemon.calls == [("stop", "alpha")])
        await until(pilot, lambda: cell(app, "alpha", "state") == "stopped")
        assert notified(app, "stop requested for alpha", "stopped")


async def test_stop_on_an_ended_run_is_refused_without_asking(daemon: ScriptedDaemon) -> None:
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.screen.query_one(RunsTable).row_count == 3)
        await pilot.press("down", "down", "s")
        await pilot.pause(0.1)
        assert isinstance(app.screen, RunsScreen)
        assert notified(app, "gamma is completed")
        assert daemon.calls == []


async def test_stop_failure_is_reported(daemon: ScriptedDaemon) -> None:
    daemon.fail["stop"] = DaemonError(409, "run alpha is not running")
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.screen.query_one(RunsTable).row_count == 3)
        await pilot.press("s", "y")
        await until(pilot, lambda: notified(app, "could not stop alpha: run alpha is not running"))
