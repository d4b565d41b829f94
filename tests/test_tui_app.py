"""The dashboard driven by Textual's Pilot, with the daemon's answers scripted.

`fetch_snapshot` is replaced by a scripted daemon so these tests cover the app's
own behaviour (polling in a thread, in-place row updates, navigation, the stop
confirmation) quickly; test_tui_live.py drives the same app against a real
`qwen-daemon serve`.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable

import msgspec
import pytest
from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Static

from qwen_daemon.client import DaemonClient, DaemonError
from qwen_daemon.protocol import HostView, RunDetail, RunView, SamplerHealth
from qwen_daemon.resources import MetricStats, ResourceSample, ResourceSummary
from qwen_tui import app as app_module
from qwen_tui.app import HemmaApp
from qwen_tui.poller import Snapshot, fetch_snapshot
from qwen_tui.screens.confirm import ConfirmScreen
from qwen_tui.screens.detail import RunDetailScreen
from qwen_tui.screens.runs import RunsScreen
from qwen_tui.widgets.banner import ConnectionBanner
from qwen_tui.widgets.runs_table import RunsTable

pytestmark = pytest.mark.asyncio

SIZE = (160, 45)


def run_view(name: str, **changes: object) -> RunView:
    base: dict[str, object] = dict(
        name=name,
        lane="single-speaker",
        surface="lab",
        runner="process",
        state="running",
        health="live",
        run_dir=f"/tmp/runs/{name}",
        created_at=time.time() - 60,
        step=10,
        max_steps=100,
        loss=2.0,
        steps_per_s=1.0,
    )
    base.update(changes)
    return RunView(**base)  # type: ignore[arg-type]


class ScriptedDaemon:
    """Answers polls from `runs`; `up` False makes it unreachable."""

    def __init__(self, *views: RunView) -> None:
        self.runs: dict[str, RunView] = {v.name: v for v in views}
        self.up = True
        self.polls = 0
        self.stops: list[str] = []

    def set(self, name: str, **changes: object) -> None:
        self.runs[name] = msgspec.structs.replace(self.runs[name], **changes)

    def fetch(self, client: DaemonClient, detail_name: str | None = None) -> Snapshot:
        self.polls += 1
        if not self.up:
            raise DaemonError(0, f"daemon not reachable at {client.socket_path} (scripted)")
        host = HostView(SamplerHealth(5.0, time.time(), True), ResourceSample(time.time(), 12.0, 1, 2))
        detail: RunDetail | None = None
        detail_error: str | None = None
        if detail_name is not None:
            if detail_name in self.runs:
                summary = ResourceSummary(3, time.time() - 10, time.time(), {"cpu_percent": MetricStats(3, 1, 1, 1, 1)})
                detail = RunDetail(self.runs[detail_name], None, summary)
            else:
                detail_error = f"no run named {detail_name!r}"
        return Snapshot(time.time(), tuple(self.runs.values()), host, None, detail_name, detail, detail_error)

    def stop(self, name: str) -> RunView:
        self.stops.append(name)
        self.set(name, state="stopped", health="ended")
        return self.runs[name]


@pytest.fixture
def daemon(monkeypatch: pytest.MonkeyPatch) -> ScriptedDaemon:
    scripted = ScriptedDaemon(run_view("alpha"), run_view("beta"), run_view("gamma", state="completed", health="ended"))
    monkeypatch.setattr(app_module, "fetch_snapshot", scripted.fetch)
    return scripted


def make_app(daemon: ScriptedDaemon | None = None, **kwargs: object) -> HemmaApp:
    app = HemmaApp(f"/tmp/qwen-tui-test-{os.getpid()}.sock", refresh_interval=0.1, **kwargs)  # type: ignore[arg-type]
    if daemon is not None:
        app.client.stop = daemon.stop  # type: ignore[method-assign]
    return app


async def until(pilot: Pilot[None], predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.05)


def cell(app: HemmaApp, name: str, column: str) -> str:
    table = app.screen_stack[0].query_one(RunsTable)
    value = table.get_cell(name, column)
    return value if isinstance(value, str) else value.plain


def plain(renderable: object) -> str:
    """What a Static shows, as text (its content is a Rich renderable or a string)."""
    console = Console(width=160, record=True, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


def banner(app: HemmaApp) -> ConnectionBanner:
    return app.screen.query_one(ConnectionBanner)


async def test_unreachable_daemon_is_stated_and_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []

    def counting_fetch(client: DaemonClient, detail_name: str | None = None) -> Snapshot:
        calls.append(time.monotonic())
        return fetch_snapshot(client, detail_name)  # the real client, against a socket nobody serves

    monkeypatch.setattr(app_module, "fetch_snapshot", counting_fetch)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: banner(app).display and len(calls) >= 3)
        text = str(banner(app).content)
        assert "daemon not reachable at /tmp/qwen-tui-test-" in text
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
        del daemon.runs["gamma"]
        daemon.runs["delta"] = run_view("delta", health="waiting", step=None)
        await until(pilot, lambda: "delta" in table.rows and "gamma" not in table.rows)
        assert table.selected_name == "beta"


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
        assert daemon.stops == []
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("enter")  # Enter answers the focused, harmless button
        await until(pilot, lambda: isinstance(app.screen, RunsScreen))
        assert daemon.stops == []
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: daemon.stops == ["alpha"])
        await until(pilot, lambda: cell(app, "alpha", "state") == "stopped")
        messages = [n.message for n in app._notifications]
        assert any("stop requested for alpha" in m and "stopped" in m for m in messages)


async def test_stop_on_an_ended_run_is_refused_without_asking(daemon: ScriptedDaemon) -> None:
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.screen.query_one(RunsTable).row_count == 3)
        await pilot.press("down", "down", "s")
        await pilot.pause(0.1)
        assert isinstance(app.screen, RunsScreen)
        assert any("gamma is completed" in n.message for n in app._notifications)
        assert daemon.stops == []


async def test_stop_failure_is_reported(daemon: ScriptedDaemon) -> None:
    def refusing_stop(name: str) -> RunView:
        raise DaemonError(409, f"run {name} is not running")

    app = make_app(daemon)
    app.client.stop = refusing_stop  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.screen.query_one(RunsTable).row_count == 3)
        await pilot.press("s", "y")
        await until(pilot, lambda: any("could not stop alpha" in n.message for n in app._notifications))
