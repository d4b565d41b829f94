"""Resume, diagnose, start and the bind-root probe, driven by keys against the scripted daemon.

Each action must ask first (and do nothing on "no"), call the daemon once on
"yes", and say what happened: the daemon's account on success, the daemon's
own message, unchanged, on failure.
"""

from __future__ import annotations

import pytest
from textual.widgets import Input, Static

from qwen_daemon.protocol import ProbeResult, ProbeView
from qwen_daemon.protocol.client import DaemonError
from qwen_tui.screens.confirm import ConfirmScreen
from qwen_tui.screens.detail import RunDetailScreen
from qwen_tui.screens.host import HostScreen
from qwen_tui.screens.launch import LaunchScreen
from qwen_tui.screens.runs import RunsScreen
from qwen_tui.widgets.runs_table import RunsTable
from tests.test_tui_harness import SIZE, ScriptedDaemon, make_app, notified, plain, run_view, until

pytestmark = pytest.mark.asyncio


@pytest.fixture
def daemon() -> ScriptedDaemon:
    return ScriptedDaemon(
        run_view("ended", state="failed_non_finite", health="ended"),
        run_view("live"),
    )


async def loaded(pilot, app) -> None:  # type: ignore[no-untyped-def]
    await until(pilot, lambda: app.screen.query_one(RunsTable).row_count >= 2)


async def test_resume_asks_then_reports_the_new_launch(daemon: ScriptedDaemon) -> None:
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "newest durable checkpoint" in app.screen.question
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen))
        assert daemon.calls == [] and notified(app, "resume ended: cancelled, nothing was sent")
        await pilot.press("R", "y")
        await until(pilot, lambda: notified(app, "ended resumed", "launching", "nonce n2"))
        assert daemon.calls == [("resume", "ended")]


async def test_resume_of_an_active_run_is_refused_without_asking(daemon: ScriptedDaemon) -> None:
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        await pilot.press("down", "R")
        await until(pilot, lambda: notified(app, "live is running", "stop it first"))
        assert isinstance(app.screen, RunsScreen) and daemon.calls == []


async def test_resume_refusal_from_the_daemon_is_shown_as_given(daemon: ScriptedDaemon) -> None:
    daemon.fail["resume"] = DaemonError(422, "run ended has no durable checkpoint to resume from")
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        await pilot.press("R", "y")
        await until(pilot, lambda: notified(app, "could not resume ended: run ended has no durable checkpoint"))
        error = next(n for n in app._notifications if "could not resume" in n.message)
        assert error.severity == "error"


async def test_diagnose_from_the_detail_screen_starts_a_job(daemon: ScriptedDaemon) -> None:
    app = make_app(daemon, initial_run="ended")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "last non-finite event" in app.screen.question
        await pilot.press("y")
        await until(pilot, lambda: notified(app, "diagnose job ended-diag started for ended"))
        assert daemon.calls == [("diagnose", "ended@None")]  # step None: its last non-finite event
        assert isinstance(app.screen, RunDetailScreen)


async def test_diagnose_of_an_active_run_is_refused_without_asking(daemon: ScriptedDaemon) -> None:
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        await pilot.press("down", "d")
        await until(pilot, lambda: notified(app, "live is running: a run is diagnosed only once it has ended"))
        assert isinstance(app.screen, RunsScreen) and daemon.calls == []


async def test_diagnose_error_is_shown_plainly(daemon: ScriptedDaemon) -> None:
    daemon.fail["diagnose"] = DaemonError(404, "no such route: POST /runs/ended/diagnose")
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        await pilot.press("d", "y")
        await until(pilot, lambda: notified(app, "could not diagnose ended: no such route: POST /runs/ended/diagnose"))


async def test_start_takes_a_path_confirms_and_launches(daemon: ScriptedDaemon) -> None:
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, LaunchScreen))
        await pilot.press("enter")  # nothing typed: stays, says so
        problem = app.screen.query_one("#problem", Static)
        await until(pilot, lambda: problem.display)
        assert "type the spec file's path" in plain(problem.content)
        await pilot.press(*"specs/a.json", "enter")  # keys typed go to the input, not to app bindings
        await until(pilot, lambda: "is relative" in plain(problem.content))
        assert isinstance(app.screen, LaunchScreen) and daemon.calls == []
        app.screen.query_one(Input).value = "/srv/specs/a.json"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "/srv/specs/a.json" in app.screen.question
        await pilot.press("y")
        await until(pilot, lambda: notified(app, "launched launched from /srv/specs/a.json", "surface lab"))
        assert daemon.calls == [("start", "/srv/specs/a.json")]
        await until(pilot, lambda: "launched" in app.screen.query_one(RunsTable).rows)


async def test_start_a_preprocess_job_chosen_by_keys(daemon: ScriptedDaemon) -> None:
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, LaunchScreen))
        app.screen.query_one(Input).value = "/srv/specs/prepare-rixvox.json"
        await pilot.press("tab", "down", "enter", "tab", "enter")  # to the kinds, pick preprocess, Next
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "preprocess job described by /srv/specs/prepare-rixvox.json" in app.screen.question
        await pilot.press("y")
        await until(pilot, lambda: notified(app, "launched preprocess job launched from /srv/specs/prepare-rixvox"))
        assert daemon.calls == [("start preprocess", "/srv/specs/prepare-rixvox.json")]


async def test_start_cancelled_and_a_governance_refusal_shown(daemon: ScriptedDaemon) -> None:
    refusal = (
        "refused by rule surface-deprecated: surface old is deprecated (not for new work): nothing is launched on it"
    )
    daemon.fail["launch"] = DaemonError(403, refusal)
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        await pilot.press("n", "escape")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen))
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, LaunchScreen))
        app.screen.query_one(Input).value = "/srv/specs/old.json"
        await pilot.press("enter", "y")
        await until(pilot, lambda: notified(app, f"could not launch /srv/specs/old.json: {refusal}"))
        assert daemon.calls == []


async def test_probe_confirms_then_shows_each_root(daemon: ScriptedDaemon) -> None:
    daemon.probe_view = ProbeView([
        ProbeResult("/srv/scratch", True, "a container wrote through /home/op/scratch; read back"),
        ProbeResult("/srv/storage", False, "the probe container could not write into /srv/storage (exit 1)"),
    ])
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        await pilot.press("h")
        await until(pilot, lambda: isinstance(app.screen, HostScreen))
        probe = app.screen.query_one("#probe", Static)
        assert "not probed yet" in plain(probe.content)
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: notified(app, "1 of 2 roots failed", "/srv/storage: the probe container"))
        await until(pilot, lambda: "FAIL  /srv/storage" in plain(probe.content))
        assert "ok    /srv/scratch" in plain(probe.content) and "probed " in plain(probe.content)
        assert daemon.calls == [("probe", "")]


async def test_probe_error_is_shown_on_the_host_screen(daemon: ScriptedDaemon) -> None:
    daemon.fail["probe"] = DaemonError(409, "bind-root probe needs the docker runner: this daemon has none")
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        await pilot.press("h", "p", "y")
        probe = app.screen.query_one("#probe", Static)
        await until(pilot, lambda: "the probe could not run: bind-root probe needs the docker" in plain(probe.content))
        assert notified(app, "could not probe the bind roots: bind-root probe needs the docker runner")
