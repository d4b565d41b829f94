"""The lanes board, the host screen and a run's curves and diagnosis, against the scripted daemon."""

from __future__ import annotations

import time

import pytest
from textual.widgets import Sparkline, Static

from qwen_daemon.protocol import (
    AuditEntry,
    BindRootStatus,
    BindRootsView,
    EvalPoint,
    Gap,
    GpuSample,
    LossPoint,
    ResourceSample,
    RunHistory,
    RunUsage,
    Surface,
    SurfaceList,
)
from qwen_daemon.protocol.client import DaemonError
from qwen_train.status import Diagnosis, Event, ModuleFinding, Status
from qwen_tui.screens.detail import RunDetailScreen
from qwen_tui.screens.host import HostScreen
from qwen_tui.screens.lanes import LanesScreen
from qwen_tui.screens.runs import RunsScreen
from qwen_tui.widgets.runs_table import RunsTable
from tests.test_tui_harness import SIZE, ScriptedDaemon, make_app, plain, run_view, until

pytestmark = pytest.mark.asyncio
GIB = 1024**3


def text_of(app, selector: str) -> str:  # type: ignore[no-untyped-def]
    return plain(app.screen.query_one(selector, Static).content)


async def test_lanes_board_groups_surfaces_by_class_with_rules_and_audit() -> None:
    daemon = ScriptedDaemon(
        run_view("a", surface="lab", lane="language-expansion"),
        run_view("b", surface="story31-lab", state="completed", health="ended"),
        run_view("c", surface="gone", surface_class=None, state="stopped", health="ended"),
    )
    daemon.surface_list = SurfaceList(
        [
            Surface("lab", "mechanism", "bounded lab runs"),
            Surface("story31-lab", "provenance", "evidence from story 31"),
            Surface("fresh-start", "recovery"),
            Surface("proof-2", "recovery", unblocked_by="/srv/gates/cand-3.verdict.json"),
            Surface("old-recipe", "deprecated"),
        ],
        "/state/surfaces.json",
    )
    now = time.time()
    daemon.audit_entries = [
        AuditEntry(now - 100, "story31-lab", "mechanism", "provenance", "frozen as evidence", "uid 1000"),
        AuditEntry(now - 10, "proof-2", "recovery", "recovery", "gate passed", "uid 1000",
                   "/srv/gates/cand-3.verdict.json"),
    ]
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.screen.query_one(RunsTable).row_count == 3)
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LanesScreen))
        await until(pilot, lambda: "story31-lab" in text_of(app, "#surfaces"))
        board = text_of(app, "#surfaces")
        assert "registry: /state/surfaces.json" in board
        assert "mechanism  bounded diagnosis experiments: launched" in board
        assert "provenance  historical evidence, read-only: never launched" in board
        assert "legacy-readonly  readable, never launched\n" in board
        assert "blocked until a mechanism candidate passes the promotion gate" in board
        assert "fresh-start" in board and "blocked: no passed promotion gate" in board
        assert "unblocked by gate /srv/gates/cand-3.verdict.json" in board
        assert "not in the registry" in board and "gone" in board
        assert board.index("mechanism") < board.index("recovery") < board.index("provenance")
        lanes = text_of(app, "#lanes")
        assert "language-expansion" in lanes and "held-out speakers" in lanes and "1 (1 active)" in lanes
        audit = text_of(app, "#audit")
        assert audit.index("proof-2") < audit.index("story31-lab")  # newest first
        assert "mechanism → provenance" in audit and "frozen as evidence" in audit
        await pilot.press("l")  # already there: no second board on the stack
        assert sum(isinstance(s, LanesScreen) for s in app.screen_stack) == 1
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen))


async def test_lanes_board_states_a_daemon_error() -> None:
    daemon = ScriptedDaemon(run_view("a"))
    daemon.fail["surfaces"] = DaemonError(403, "refused by rule surfaces-file: /state/surfaces.json is malformed")
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LanesScreen))
        error = app.screen.query_one("#board-error", Static)
        await until(pilot, lambda: error.display)
        assert "rule surfaces-file: /state/surfaces.json is malformed" in plain(error.content)
        assert "single-speaker" in text_of(app, "#lanes")  # lanes come from the run list, still shown


async def test_host_screen_live_figures_sampler_and_bind_roots() -> None:
    daemon = ScriptedDaemon(run_view("a"))
    now = time.time()
    usage = {"a": RunUsage(processes=3, cpu_percent=41.5, rss_bytes=3 * GIB, gpu_memory_bytes=20 * GIB)}

    def sample(t: float, cpu: float) -> ResourceSample:
        gpu = GpuSample(0, "NVIDIA H100", cpu, int(cpu) * GIB, 80 * GIB)
        return ResourceSample(t, cpu, 8 * GIB, 64 * GIB, [gpu], runs=usage)

    daemon.samples = [sample(now, 10.0)]
    daemon.sampler = daemon.sampler.__class__(
        5.0, now, True, gaps=[Gap(now - 900, now - 600)], journal="journald (QWEN_RUN, metric fields)"
    )
    daemon.roots = BindRootsView([
        BindRootStatus("/srv/scratch", "/home/op/scratch", True, mounted_from="8:1:/home/op/scratch"),
        BindRootStatus("/srv/storage", "/home/op/storage", False,
                       ["/srv/storage is not a mount point, so it is not /home/op/storage: mount --bind ..."]),
    ])
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("h")
        await until(pilot, lambda: isinstance(app.screen, HostScreen))
        await until(pilot, lambda: "alive" in text_of(app, "#sampler"))
        sampler = text_of(app, "#sampler")
        assert "every 5s" in sampler and "journald (QWEN_RUN, metric fields)" in sampler
        assert "1 gap without samples, 5m00s in all" in sampler
        await until(pilot, lambda: "PROBLEM /srv/storage" in text_of(app, "#roots"))
        roots = text_of(app, "#roots")
        assert "ok      /srv/scratch  from /home/op/scratch" in roots and "is not a mount point" in roots
        usage_text = text_of(app, "#usage")
        assert "41.5%" in usage_text and "3.0 GiB" in usage_text and "20.0 GiB" in usage_text
        spark = app.screen.query_one("#cpu--spark", Sparkline)
        for t, cpu in ((now + 5, 30.0), (now + 10, 90.0)):  # the API serves only the newest sample
            daemon.samples.append(sample(t, cpu))
            await until(pilot, lambda cpu=cpu: (spark.data or [None])[-1] == cpu)  # type: ignore[misc]
        assert list(spark.data or []) == [10.0, 30.0, 90.0]
        assert list(app.screen.query_one("#gpu0-busy--spark", Sparkline).data or []) == [10.0, 30.0, 90.0]
        label = plain(app.screen.query_one("#cpu--label").render())
        assert "CPU 90.0%" in label and "last 3 samples over 10s: min 10.0%, max 90.0%" in label
        assert "GPU0 VRAM 90.0 GiB of 80.0 GiB" in plain(app.screen.query_one("#gpu0-vram--label").render())
        daemon.sampler = daemon.sampler.__class__(5.0, now - 600, False, "no GPU: NVML library not found")
        await until(pilot, lambda: "NOT RUNNING" in text_of(app, "#sampler"))
        assert "no GPU: NVML library not found" in text_of(app, "#sampler")


async def test_host_screen_states_route_errors() -> None:
    daemon = ScriptedDaemon(run_view("a"))
    daemon.fail["bind_roots"] = DaemonError(500, "internal error: mountinfo unreadable")
    app = make_app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("h")
        await until(pilot, lambda: isinstance(app.screen, HostScreen))
        error = app.screen.query_one("#host-error", Static)
        await until(pilot, lambda: error.display)
        assert "/bind-roots: internal error: mountinfo unreadable" in plain(error.content)


def status_for(name: str, **changes: object) -> Status:
    base: dict[str, object] = dict(run_id=name, nonce="n1", host="hemma", pid=42, state="training",
                                   heartbeat=time.time(), started_at=time.time() - 60, step=40, max_steps=100)
    base.update(changes)
    return Status(**base)  # type: ignore[arg-type]


async def test_detail_draws_the_daemons_history_and_it_grows() -> None:
    daemon = ScriptedDaemon(run_view("a", step=3, loss=2.5))
    losses = [LossPoint(s, 5.0 / (1 + s), 4.0 / (1 + s), 1.0 / (1 + s)) for s in range(3)]
    daemon.histories["a"] = RunHistory("a", losses, [EvalPoint(2, 3.0, {"fleurs": 3.1})])
    daemon.statuses["a"] = status_for("a", cursor_check="reset: epoch 2 from batch 0 (asked with --reset-cursor)")
    app = make_app(daemon, initial_run="a")
    async with app.run_test(size=SIZE) as pilot:
        spark = app.screen.query_one("#loss-spark", Sparkline)
        await until(pilot, lambda: len(spark.data or []) == 3)
        label = plain(app.screen.query_one("#loss-label").render())
        assert "train loss: 3 points, steps 0–2 (the run's record, from the daemon)" in label
        assert "talker 1.3333, code predictor 0.3333" in label
        assert "fleurs 3.1000" in plain(app.screen.query_one("#eval-label").render())
        grown = [*losses, LossPoint(3, float("inf"), 1.0, 1.0), LossPoint(4, 1.0, 0.8, 0.2)]
        daemon.histories["a"] = RunHistory("a", grown)
        await until(pilot, lambda: len(spark.data or []) == 4)
        assert "1 non-finite point not drawn: step 3" in plain(app.screen.query_one("#loss-label").render())
        assert "reset: epoch 2 from batch 0 (asked with --reset-cursor)" in text_of(app, "#status")


async def test_detail_falls_back_to_watching_and_says_why() -> None:
    daemon = ScriptedDaemon(run_view("a", step=3, loss=2.5))
    daemon.fail["history"] = DaemonError(404, "no such route: GET /runs/a/history")
    app = make_app(daemon, initial_run="a")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "seen while watching" in plain(app.screen.query_one("#loss-label").render()))
        daemon.set("a", step=4, loss=2.0)
        spark = app.screen.query_one("#loss-spark", Sparkline)
        await until(pilot, lambda: list(spark.data or []) == [2.5, 2.0])
        label = plain(app.screen.query_one("#loss-label").render())
        assert "the daemon gave no history: no such route: GET /runs/a/history" in label


async def test_detail_diagnosis_panel_from_status_and_from_the_daemon() -> None:
    daemon = ScriptedDaemon(run_view("a", state="failed_non_finite", health="ended"), run_view("b"))
    finding = ModuleFinding("talker.model.layers.15.mlp", "bfloat16", "3.1e+04", "inf")
    diagnosis = Diagnosis(step=812, epoch=1, position=40, loss_parts={"talker": "nan", "code_predictor": "2.1"},
                          grad_norm="nan", broken_parts=["talker"], forward=finding, backward=None,
                          backward_note="anomaly detection: backward stayed finite", precision="bf16",
                          fp32_reproduces=False, summary="step 812: talker loss is NaN", created_at=time.time())
    event = Event(time.time(), "non_finite", "talker loss NaN at step 812", 812)
    daemon.statuses["a"] = status_for("a", state="failed_non_finite", non_finite_events=[event], retries=2)
    daemon.diagnoses["a"] = diagnosis
    daemon.statuses["b"] = status_for("b", non_finite_events=[event], retries=1)
    app = make_app(daemon, initial_run="a")
    async with app.run_test(size=SIZE) as pilot:
        panel = app.screen.query_one("#diagnosis", Static)
        await until(pilot, lambda: "talker.model.layers.15.mlp" in plain(panel.content))
        text = plain(panel.content)
        assert "1 non-finite event, 2 retries" in text and "step 812: talker loss is NaN" in text
        assert "finite in fp32: the fault appears only in bf16" in text
        assert panel.has_class("-alarm")
        await pilot.press("escape", "down", "enter")
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.run_name == "b")
        panel = app.screen.query_one("#diagnosis", Static)
        await until(pilot, lambda: "no diagnosis yet: press d" in plain(panel.content))
        assert "run 'b' has no diagnosis" in plain(panel.content)
