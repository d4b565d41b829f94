"""A daemon killed between forking a trainer and recording its pid loses nothing and starts no second trainer.

The real daemon launches the real trainer (tiny model, demo bundle) with the
fault hook that pauses right after the spawn, and is SIGKILLed inside that
pause: the registry holds a launch with a nonce and no pid. The restarted
daemon must find the trainer by its nonce and reattach it; while it lives, no
resume and no second `qwen-train run` may start beside it; the run's
losses.jsonl must hold each step once.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from qwen_daemon.faults import FAULT_ENV
from qwen_daemon.protocol import ACTIVE_STATES, RunDetail, RunView
from qwen_daemon.protocol.client import DaemonClient, DaemonError
from qwen_train import exitcodes
from qwen_train.run_lock import Holder, held_by
from qwen_train.spec import Posture, RunSpec, TrainConfig
from tests.conftest import REPO, python_env
from tests.test_daemon_harness import DaemonProcess, pid_alive, wait_until
from tests.test_run_lock import hold_in_child


def tiny_spec(demo_root: Path, name: str) -> RunSpec:
    return RunSpec(
        name=name, lane="language-expansion", model=str(demo_root / "model"), bundle=str(demo_root / "bundle"),
        posture=Posture(checkpoint_every=20, eval_every=1000, keep_last=2),
        train=TrainConfig(batch_size=2, lr=1e-3, max_steps=100000, eval_max_rows=2),
    )


def daemon(state: Path, sock: Path, fault: str | None = None) -> DaemonProcess:
    env = {"PYTHONPATH": str(REPO)} | ({FAULT_ENV: fault} if fault else {})
    return DaemonProcess(state, sock, Path(sys.executable), "--sample-period", "0.5", "--stale-after", "60",
                         env=env).start()


def steps_logged(run_dir: Path) -> list[int]:
    lines = (run_dir / "losses.jsonl").read_text().splitlines()
    return [msgspec.json.decode(line)["step"] for line in lines if line.endswith("}")]


def step_of(client: DaemonClient) -> int:
    status = client.run("fw").status
    return status.step if status is not None else -1


def running(client: DaemonClient) -> RunView | None:
    view = client.run("fw").run
    return view if view.state == "running" else None


def ended_detail(client: DaemonClient) -> RunDetail | None:
    detail = client.run("fw")
    return detail if detail.run.state not in ACTIVE_STATES else None


def test_killed_at_the_fork_the_daemon_reattaches_and_no_second_trainer_starts(
        demo_root: Path, short_tmp: Path) -> None:
    state, sock = short_tmp / "state", short_tmp / "d.sock"
    first = daemon(state, sock, fault="pause-after-spawn:120")
    run_dir = first.run_dir("fw")
    asked = threading.Thread(target=lambda: _ignore(lambda: first.client.launch(spec=tiny_spec(demo_root, "fw"))),
                             daemon=True)
    asked.start()
    holder: Holder = wait_until(lambda: held_by(run_dir), timeout=120, what="the trainer to take its run dir")
    assert first.client.run("fw").run.pid is None  # the window: forked, pid not yet recorded
    first.stop(signal.SIGKILL)
    assert pid_alive(holder.pid)

    second = daemon(state, sock)
    try:
        client = second.client
        view = wait_until(lambda: running(client), timeout=30, what="the restarted daemon to reattach the trainer")
        assert view.pid == holder.pid and view.nonce == holder.nonce
        events = [e.kind for e in client.run("fw").events]
        assert "reattach" in events
        wait_until(lambda: client.run("fw").run.health == "live", timeout=120, what="a live heartbeat")

        with pytest.raises(DaemonError) as refused:
            client.resume("fw")
        assert refused.value.status == 409

        spec_file = run_dir / "spec.json"
        beside = subprocess.run([sys.executable, "-m", "qwen_train", "run", str(spec_file), "--run-dir", str(run_dir),
                                 "--nonce", "by-hand"], capture_output=True, text=True, env=python_env(), timeout=300)
        assert beside.returncode == exitcodes.RUN_LOCKED, beside.stderr
        assert f"pid {holder.pid}" in beside.stderr

        wait_until(lambda: step_of(client) >= 25, timeout=300, what="25 steps")
        client.stop("fw")
        ended = wait_until(lambda: ended_detail(client), timeout=300, what="the graceful stop")
        assert ended.run.state == "stopped", ended.run.message
        steps = steps_logged(run_dir)
        assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 25  # each step once, in order
        assert not pid_alive(holder.pid)

        hand = hold_in_child(run_dir, "manual")  # an ended run whose dir someone else holds
        try:
            with pytest.raises(DaemonError) as held:
                client.resume("fw")
            assert held.value.status == 409 and "one-process-per-run-dir" in str(held.value)
            assert f"pid {hand.pid}" in str(held.value)
        finally:
            hand.kill()
            hand.wait()
        assert client.resume("fw").nonce != holder.nonce  # free again: the resume starts
        client.stop("fw")
        wait_until(lambda: client.run("fw").run.state not in ACTIVE_STATES, timeout=300, what="the second stop")
    finally:
        second.stop()


def _ignore(call: Callable[[], object]) -> None:
    with contextlib.suppress(DaemonError):  # the daemon dies under the request: that is the test
        call()
