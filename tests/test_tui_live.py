"""The dashboard against a real `qwen-daemon serve` on a temporary socket.

A stand-in trainer (a script passed as --trainer-python) writes status.json
through qwen_train.status with the launch's nonce every 0.2 s, appends each
step to losses.jsonl and an eval every 5 steps to report.json as the real
trainer does, and exits 5 (stopped) on SIGTERM, so the daemon's whole path is
real: launch, process runner, stale-status guard, sampler, history, stop. One
test watches a row's step change in the table, opens the run's detail, and
stops the run with `s` + `y`; another pauses the trainer (SIGSTOP) and sees the
row turn stale, with no numbers, and come back; a third opens the lanes board
and the host screen and watches the run's loss curve grow from the daemon's
history.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Label, Sparkline, Static

from qwen_daemon.protocol import ACTIVE_STATES, RunView
from qwen_daemon.protocol.client import DaemonClient, DaemonError
from qwen_train.spec import Posture, RunSpec, TrainConfig
from qwen_tui.app import HemmaApp
from qwen_tui.screens.confirm import ConfirmScreen
from qwen_tui.screens.detail import RunDetailScreen
from qwen_tui.screens.host import HostScreen
from qwen_tui.screens.lanes import LanesScreen
from qwen_tui.screens.runs import RunsScreen
from qwen_tui.widgets.runs_table import RunsTable

REPO = Path(__file__).resolve().parent.parent
RUN = "tui-live"


FAKE_TRAINER = """\
#!{python}
# Stand-in for `python -m qwen_train run SPEC --run-dir DIR --run-id NAME --nonce NONCE`.
import argparse, os, signal, socket, sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
import msgspec
from qwen_train.atomic import atomic_write_bytes
from qwen_train.status import EvalResult, Losses, Status, Throughput, write_status

parser = argparse.ArgumentParser()
parser.add_argument("-m")
parser.add_argument("command")
parser.add_argument("spec")
parser.add_argument("--run-dir", required=True)
parser.add_argument("--run-id", required=True)
parser.add_argument("--nonce", required=True)
args, _ = parser.parse_known_args()
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
started = time.time()
step = 0
evals = []
run_dir = Path(args.run_dir)
while True:
    state = "stopped" if stopping else "training"
    losses = Losses(total=5.0 / (1 + step), talker=4.0 / (1 + step), code_predictor=1.0 / (1 + step))
    with (run_dir / "losses.jsonl").open("ab") as handle:
        handle.write(msgspec.json.encode(dict(step=step, **msgspec.structs.asdict(losses))) + b"\\n")
    if step % 5 == 0:
        evals.append(EvalResult(step=step, losses=losses, rows=8, per_split={{"fleurs": losses}}))
        atomic_write_bytes(run_dir / "report.json", msgspec.json.encode({{"evals": evals}}))
    write_status(run_dir, Status(
        run_id=args.run_id, nonce=args.nonce, host=socket.gethostname(), pid=os.getpid(),
        state=state, heartbeat=time.time(), started_at=started, step=step, max_steps=100000,
        losses=losses, lr=2e-5, throughput=Throughput(steps_per_s=5.0, frames_per_s=250.0),
        last_eval=evals[-1],
    ))
    if stopping:
        sys.exit(5)
    time.sleep(0.2)
    step += 1
"""


@dataclass
class LiveDaemon:
    socket: Path
    root: Path
    process: subprocess.Popen[bytes]

    @property
    def client(self) -> DaemonClient:
        return DaemonClient(self.socket, timeout=5.0)

    def log(self) -> str:
        return (self.root / "daemon.log").read_text(errors="replace")

    def launch(self) -> RunView:
        """Inline spec with absolute paths; the stand-in trainer ignores model and bundle."""
        spec = RunSpec(
            name=RUN,
            lane="single-speaker",
            model=str(self.root / "model"),
            bundle=str(self.root / "bundle"),
            posture=Posture(checkpoint_every=50, eval_every=10, keep_last=1),
            train=TrainConfig(max_steps=100000, device="cpu"),
        )
        return self.client.launch(spec=spec)


def _start(root: Path, extra: list[str]) -> LiveDaemon:
    trainer = root / "fake-trainer"
    trainer.write_text(FAKE_TRAINER.format(python=sys.executable, repo=str(REPO)))
    trainer.chmod(0o755)
    (root / "model").mkdir()
    (root / "bundle").mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["PYTHONUNBUFFERED"] = "1"
    command = [
        sys.executable, "-m", "qwen_daemon", "serve", "--state-dir", str(root / "state"),
        "--socket", str(root / "d.sock"), "--trainer-python", str(trainer), "--sample-period", "0.5", *extra,
    ]  # fmt: skip
    # Output goes to a file, not a pipe nobody drains once the daemon is up.
    with (root / "daemon.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    daemon = LiveDaemon(root / "d.sock", root, process)
    deadline = time.monotonic() + 20.0
    while "qwen-daemon serving on" not in daemon.log():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"daemon did not become ready (exit {process.poll()}):\n{daemon.log()}")
        time.sleep(0.05)
    return daemon


def _shut_down(daemon: LiveDaemon) -> None:
    """Stop what the test started: its trainers by pid (resumed first if paused), then the daemon."""
    try:
        runs = daemon.client.runs().runs
    except DaemonError:
        runs = []
    for view in runs:
        if view.pid is not None and view.state in ACTIVE_STATES:
            for sig in (signal.SIGCONT, signal.SIGTERM):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(view.pid, sig)
    if daemon.process.poll() is None:
        daemon.process.send_signal(signal.SIGTERM)
        try:
            daemon.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            daemon.process.kill()
            daemon.process.wait()


@pytest.fixture
def start_daemon() -> Iterator[Callable[..., LiveDaemon]]:
    """`start_daemon(*serve_args)`: a real daemon on a short /tmp socket, torn down after the test."""
    started: list[LiveDaemon] = []
    roots: list[Path] = []

    def start(*extra: str) -> LiveDaemon:
        root = Path(tempfile.mkdtemp(prefix="qh-tui-", dir="/tmp"))  # Unix socket paths must stay short
        roots.append(root)
        daemon = _start(root, list(extra))
        started.append(daemon)
        return daemon

    try:
        yield start
    finally:
        for daemon in started:
            _shut_down(daemon)
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)


def plain(renderable: object) -> str:
    """What a Static shows, as text (its content is a Rich renderable or a string)."""
    console = Console(width=160, record=True, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


def table_cell(app: HemmaApp, column: str) -> str:
    value = app.screen_stack[0].query_one(RunsTable).get_cell(RUN, column)
    return value if isinstance(value, str) else value.plain


def run_state(app: HemmaApp) -> str | None:
    view = app.snapshot.run(RUN) if app.snapshot is not None else None
    return view.state if view is not None else None


async def until(pilot: Pilot[None], predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.1)


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_dashboard_follows_and_stops_a_live_run(start_daemon: Callable[..., LiveDaemon]) -> None:
    daemon = start_daemon()
    assert daemon.launch().name == RUN

    app = HemmaApp(daemon.socket, refresh_interval=0.2)
    async with app.run_test(size=(160, 50)) as pilot:
        table = app.screen.query_one(RunsTable)
        await until(pilot, lambda: RUN in table.rows and table_cell(app, "health") == "live", "a live row")
        first_step = table_cell(app, "step")
        await until(pilot, lambda: table_cell(app, "step") != first_step, "the row's step to change")
        assert table_cell(app, "state") == "running"

        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen), "the detail screen")
        summary = app.screen.query_one("#summary", Static)
        status = app.screen.query_one("#status", Static)
        await until(pilot, lambda: "samples" in plain(summary.content), "the resource summary")
        await until(pilot, lambda: "trainer state" in plain(status.content), "the trusted status")
        assert "host CPU" in plain(summary.content) or "no resource samples" in plain(summary.content)

        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the stop confirmation")
        await pilot.press("y")
        await until(pilot, lambda: run_state(app) == "stopped", "the run to be stopped", timeout=30.0)
        assert any(f"stop requested for {RUN}" in n.message for n in app._notifications)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen), "the runs screen")
        await until(pilot, lambda: table_cell(app, "state") == "stopped", "the table to show stopped")
        assert table_cell(app, "health") == "ended" and table_cell(app, "speed") == "—"


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_a_paused_trainer_turns_stale_and_shows_no_numbers(start_daemon: Callable[..., LiveDaemon]) -> None:
    daemon = start_daemon("--stale-after", "1")
    daemon.launch()
    app = HemmaApp(daemon.socket, refresh_interval=0.2)
    async with app.run_test(size=(160, 50)) as pilot:
        table = app.screen.query_one(RunsTable)
        await until(pilot, lambda: RUN in table.rows and table_cell(app, "health") == "live", "a live row")
        assert app.snapshot is not None
        view = app.snapshot.run(RUN)
        assert view is not None and view.pid is not None
        os.kill(view.pid, signal.SIGSTOP)  # the heartbeat stops; the process stays alive
        try:
            await until(pilot, lambda: table_cell(app, "health").startswith("stale: heartbeat"), "a stale row")
            for column in ("step", "loss", "eval_loss", "speed", "eta"):
                assert table_cell(app, column) == "—", column
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, RunDetailScreen), "the detail screen")
            status = app.screen.query_one("#status", Static)
            await until(pilot, lambda: "no trusted status" in plain(status.content), "the status to be refused")
            assert "stale: heartbeat" in plain(status.content)
        finally:
            os.kill(view.pid, signal.SIGCONT)
        await until(pilot, lambda: "trainer state" in plain(status.content), "the status to be trusted again")
        await pilot.press("escape")
        await until(pilot, lambda: table_cell(app, "health") == "live", "the row to be live again")


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_lanes_board_host_screen_and_a_growing_history(
    start_daemon: Callable[..., LiveDaemon], tmp_path: Path
) -> None:
    scratch, storage, source = tmp_path / "scratch", tmp_path / "storage", tmp_path / "home-storage"
    for path in (scratch, storage, source):
        path.mkdir()
    # One root Docker sees directly (ok); one whose bind source is not mounted on it (the daemon names the fix).
    daemon = start_daemon("--bind-root", str(scratch), "--bind-root", f"{storage}={source}")
    daemon.launch()
    app = HemmaApp(daemon.socket, refresh_interval=0.2)
    async with app.run_test(size=(160, 50)) as pilot:
        table = app.screen.query_one(RunsTable)
        await until(pilot, lambda: RUN in table.rows and table_cell(app, "health") == "live", "a live row")
        assert table_cell(app, "class") == "mechanism" and not table.kind_shown

        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LanesScreen), "the lanes board")
        surfaces = app.screen.query_one("#surfaces", Static)
        await until(pilot, lambda: "ad hoc runs and demos" in plain(surfaces.content), "the daemon's surfaces")
        board = plain(surfaces.content)
        assert "mechanism  bounded diagnosis experiments: launched" in board and "1 (1 active)" in board
        assert "no class changes recorded yet" in plain(app.screen.query_one("#audit", Static).content)
        await pilot.press("escape", "h")
        await until(pilot, lambda: isinstance(app.screen, HostScreen), "the host screen")
        roots = app.screen.query_one("#roots", Static)
        await until(pilot, lambda: "PROBLEM" in plain(roots.content), "the bind-root verdicts")
        assert f"ok      {scratch}" in plain(roots.content)
        assert f"{storage} is not a mount point" in plain(roots.content)
        sampler = app.screen.query_one("#sampler", Static)
        await until(pilot, lambda: "alive" in plain(sampler.content), "a live sampler")
        await until(pilot, lambda: len(app.host_history) >= 3, "host samples for the sparklines")
        assert app.screen.query_one("#cpu--spark", Sparkline).data

        await pilot.press("escape", "enter")
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen), "the detail screen")
        spark = app.screen.query_one("#loss-spark", Sparkline)
        label = app.screen.query_one("#loss-label", Label)
        await until(pilot, lambda: "from the daemon" in plain(label.render()) and len(spark.data or []) >= 3,
                    "the daemon's loss history")
        seen = len(spark.data or [])
        await until(pilot, lambda: len(spark.data or []) >= seen + 5, "the loss curve to grow")
        points = app.history.loss(RUN).steps()
        assert points == list(range(points[0], points[0] + len(points)))  # one point per step, none lost
        assert "talker" in plain(label.render()) and "code predictor" in plain(label.render())
        eval_label = plain(app.screen.query_one("#eval-label", Label).render())
        assert "per split: fleurs" in eval_label
