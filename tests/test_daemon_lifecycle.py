"""Launch, watch, stop and restart with a real daemon and the contract-only fake trainer."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from qwen_daemon.protocol import RunDetail, RunView
from qwen_train.status import STATUS_FILE, Losses, Status, write_status
from tests.conftest import MakeDir
from tests.test_daemon_harness import (
    DaemonProcess,
    make_spec,
    pid_alive,
    remove_tree,
    short_tmp_dir,
    trainer_wrapper,
    wait_until,
)

STOP_TIMEOUT = "1"
STALE_AFTER = "30"


@pytest.fixture(scope="module")
def short() -> Iterator[Path]:
    path = short_tmp_dir()
    yield path
    remove_tree(path)


@pytest.fixture(scope="module")
def daemon(short: Path, module_dir: MakeDir) -> Iterator[DaemonProcess]:
    proc = DaemonProcess(
        module_dir("state"), short / "d.sock", trainer_wrapper(short),
        "--sample-period", "0.2", "--stop-timeout", STOP_TIMEOUT, "--stale-after", STALE_AFTER,
    ).start()
    yield proc
    for view in proc.client.runs().runs:
        if view.state in ("launching", "running"):
            proc.client.stop(view.name)
    proc.stop()


def launch(daemon: DaemonProcess, root: Path, name: str, **fixture: Any) -> RunView:
    """Launch `name`; `fixture` (see the fake trainer) is planted in its run dir first."""
    run_dir = daemon.run_dir(name)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "fixture.json").write_text(json.dumps(fixture))
    return daemon.client.launch(spec=make_spec(root, name))


def detail_when(daemon: DaemonProcess, name: str, check: Any, what: str, timeout: float = 10.0) -> RunDetail:
    def probe() -> RunDetail | None:
        detail = daemon.client.run(name)
        return detail if check(detail) else None

    try:
        return wait_until(probe, timeout, f"{name}: {what}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last detail: {daemon.client.run(name)}") from None


def test_launch_live_stop_and_relaunch(daemon: DaemonProcess, tmp_path: Path) -> None:
    view = launch(daemon, tmp_path, "life")
    assert view.state == "running" and view.pid is not None and view.nonce is not None
    live = detail_when(daemon, "life", lambda d: d.run.health == "live" and (d.run.step or 0) > 1, "live")
    assert live.status is not None and live.status.nonce == view.nonce and live.run.loss is not None
    assert [v.name for v in daemon.client.runs().runs if v.name == "life"] == ["life"]

    stopping = daemon.client.stop("life")
    assert stopping.state in ("stopping", "stopped")
    done = detail_when(daemon, "life", lambda d: d.run.state == "stopped", "stopped")
    assert (done.run.exit_code, done.run.health) == (5, "ended")
    assert done.run.message is not None and "code 5 (stopped)" in done.run.message
    assert "stopped on SIGTERM" in done.run.message  # the trainer's own last word
    assert done.status is not None and done.status.state == "stopped" and done.run.step is not None
    assert not pid_alive(view.pid)
    assert [e.kind for e in done.events] == ["launch", "stop", "stopped"]
    assert done.summary.samples >= 1 and "cpu_percent" in done.summary.metrics
    assert daemon.client.stop("life").state == "stopped"  # idempotent

    again = launch(daemon, tmp_path, "life")
    assert again.nonce != view.nonce and again.created_at == view.created_at
    detail_when(daemon, "life", lambda d: d.run.health == "live" and d.status.nonce == again.nonce, "relaunch")
    daemon.client.stop("life")
    detail_when(daemon, "life", lambda d: d.run.state == "stopped", "stopped again")


def test_trainer_ignoring_sigterm_is_killed_after_the_timeout(daemon: DaemonProcess, tmp_path: Path) -> None:
    view = launch(daemon, tmp_path, "stubborn", ignore_sigterm=True)
    detail_when(daemon, "stubborn", lambda d: d.run.health == "live", "live")
    asked = time.monotonic()
    assert daemon.client.stop("stubborn").state == "stopping"
    time.sleep(0.5)
    assert daemon.client.run("stubborn").run.state == "stopping"  # still inside the timeout
    done = detail_when(daemon, "stubborn", lambda d: d.run.state != "stopping", "the kill", timeout=10)
    assert time.monotonic() - asked >= float(STOP_TIMEOUT)
    assert (done.run.state, done.run.exit_code) == ("failed", -signal.SIGKILL)
    assert done.run.message is not None and "killed with SIGKILL" in done.run.message
    assert "kill" in [e.kind for e in done.events]
    assert view.pid is not None and not pid_alive(view.pid)


def test_sigterm_before_the_trainer_handles_it_is_a_stop(daemon: DaemonProcess, tmp_path: Path) -> None:
    """A trainer still starting up dies of the stop's SIGTERM: stopped, not failed."""
    launch(daemon, tmp_path, "early", default_sigterm=True)
    detail_when(daemon, "early", lambda d: d.run.health == "live", "live")
    daemon.client.stop("early")
    done = detail_when(daemon, "early", lambda d: d.run.state != "stopping", "the stop")
    assert (done.run.state, done.run.exit_code) == ("stopped", -signal.SIGTERM)
    assert done.run.message is not None and "before the trainer could handle it" in done.run.message


def plant(run_dir: Path, **fields: Any) -> None:
    now = time.time()
    values: dict[str, Any] = dict(run_id="planted", nonce="0" * 32, host="h", pid=1, state="training",
                                  heartbeat=now, started_at=now, step=777, max_steps=1000,
                                  losses=Losses(total=0.5, talker=0.4, code_predictor=0.1))
    values.update(fields)
    write_status(run_dir, Status(**values))


def assert_stale(daemon: DaemonProcess, name: str, reason: str) -> None:
    detail = detail_when(daemon, name, lambda d: d.run.health == "stale", f"stale: {reason}")
    assert detail.run.stale_reason is not None and reason in detail.run.stale_reason, detail.run.stale_reason
    assert detail.status is None
    assert (detail.run.step, detail.run.loss, detail.run.max_steps, detail.run.steps_per_s) == (None,) * 4
    listed = [v for v in daemon.client.runs().runs if v.name == name]
    assert listed[0].health == "stale" and listed[0].step is None


def test_planted_stale_status_is_never_live(daemon: DaemonProcess, tmp_path: Path) -> None:
    view = launch(daemon, tmp_path, "quiet", write_status=False)
    assert view.health == "waiting" and view.step is None
    run_dir = Path(view.run_dir)
    mine: dict[str, Any] = dict(run_id="quiet", nonce=view.nonce, pid=view.pid)

    plant(run_dir, **{**mine, "nonce": "f" * 32})
    assert_stale(daemon, "quiet", f"nonce {'f' * 32} is not the active launch's {view.nonce}")
    plant(run_dir, **{**mine, "heartbeat": time.time() - 3600})
    assert_stale(daemon, "quiet", "heartbeat 3600 s old (stale after 30 s)")
    plant(run_dir, **{**mine, "pid": os.getpid()})
    assert_stale(daemon, "quiet", f"pid {os.getpid()} is not the active launch's pid {view.pid}")
    good = msgspec.json.encode(Status(**{**mine, "host": "h", "state": "training", "heartbeat": time.time(),
                                          "started_at": time.time(), "step": 3}))
    (run_dir / STATUS_FILE).write_bytes(good[: len(good) // 2])
    assert_stale(daemon, "quiet", "malformed status.json")

    plant(run_dir, **mine)  # the control: the same fields, intact and fresh, are live
    live = detail_when(daemon, "quiet", lambda d: d.run.health == "live", "live")
    assert (live.run.step, live.run.loss) == (777, 0.5)
    wait_until(lambda: "step 1\n" in (run_dir / "trainer.log").read_text(), 10, "the trainer's first step")
    daemon.client.stop("quiet")
    done = detail_when(daemon, "quiet", lambda d: d.run.state != "stopping", "the stop")
    assert (done.run.state, done.run.exit_code) == ("stopped", 5)


@pytest.mark.parametrize(
    ("code", "state"),
    [(0, "completed"), (3, "cursor_rejected"), (4, "failed_non_finite"), (1, "failed"), (7, "failed"),
     (8, "failed_oom")],
)
def test_exit_codes_become_states(daemon: DaemonProcess, tmp_path: Path, code: int, state: str) -> None:
    name = f"exit-{code}"
    launch(daemon, tmp_path, name, exit_after_s=0.2, exit_code=code)
    done = detail_when(daemon, name, lambda d: d.run.state not in ("launching", "running"), "the exit")
    assert (done.run.state, done.run.exit_code, done.run.health) == (state, code, "ended")
    assert done.run.message is not None and f"fake trainer exits {code}" in done.run.message
    if state not in ("completed",):
        assert "trainer.log" in done.run.message


def test_restart_reattaches_or_marks_interrupted(tmp_path: Path) -> None:
    short = short_tmp_dir()
    try:
        first = DaemonProcess(tmp_path / "state", short / "r.sock", trainer_wrapper(short), "--stop-timeout", "5")
        first.start()
        kept = launch(first, tmp_path, "kept")
        lost = launch(first, tmp_path, "lost")
        detail_when(first, "kept", lambda d: d.run.health == "live", "live")
        assert first.stop(signal.SIGTERM) == 0
        assert not first.socket.exists()
        assert kept.pid is not None and lost.pid is not None and pid_alive(kept.pid)  # runs outlive the daemon
        os.kill(lost.pid, signal.SIGKILL)
        wait_until(lambda: not pid_alive(lost.pid), 5, "the lost trainer to die")  # type: ignore[arg-type]

        second = DaemonProcess(first.state_dir, first.socket, first.trainer).start()
        try:
            reattached = second.client.run("kept")
            assert reattached.run.state == "running" and "reattach" in [e.kind for e in reattached.events]
            detail_when(second, "kept", lambda d: d.run.health == "live", "live after restart")
            interrupted = second.client.run("lost").run
            assert (interrupted.state, interrupted.exit_code) == ("interrupted", None)
            assert interrupted.message is not None and "exit code unknown" in interrupted.message

            second.client.stop("kept")
            done = detail_when(second, "kept", lambda d: d.run.state != "stopping", "stop after restart")
            assert (done.run.state, done.run.exit_code) == ("stopped", None)  # from its own final status
            assert done.run.message is not None and "final status" in done.run.message
        finally:
            second.stop()
    finally:
        remove_tree(short)
