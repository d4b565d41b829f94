"""`qwen-daemon ... | head` and `qwen-tui --help | head` end quietly when the reader goes away first.

Python ignores SIGPIPE, so a write into a pipe whose reader has gone raises BrokenPipeError, and
again when the interpreter flushes stdout at exit. Both entry points are wrapped in
qwen_train.closed_pipe.quiet_on_closed_pipe: no traceback, exit 141 (128 + SIGPIPE).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwen_train.closed_pipe import EXIT_CLOSED_PIPE
from tests.conftest import REPO, python_env
from tests.test_daemon_harness import DaemonProcess, make_spec, plain_daemon, wait_until


@pytest.fixture
def daemon() -> Iterator[DaemonProcess]:
    yield from plain_daemon()


def _into_closed_pipe(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run argv with stdout a pipe whose read end is already closed: its first write breaks, every time."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(list(argv), stdout=write, stderr=subprocess.PIPE, env={**python_env(), **(env or {})},
                              cwd=REPO, timeout=60)
    finally:
        os.close(write)


def _quiet(done: subprocess.CompletedProcess[bytes]) -> None:
    err = done.stderr.decode()
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err, err
    assert done.returncode == EXIT_CLOSED_PIPE, (done.returncode, err)


def _launched(daemon: DaemonProcess, name: str) -> Path:
    daemon.client.launch(spec=make_spec(daemon.state_dir.parent, name))
    wait_until(lambda: daemon.client.run(name).run.health == "live", 15, f"{name} to be live")
    return daemon.run_dir(name)


def test_show_and_runs_into_a_closed_pipe_end_quietly(daemon: DaemonProcess) -> None:
    _launched(daemon, "piped")
    cli = [sys.executable, "-m", "qwen_daemon"]
    for command in (["show", "piped"], ["show", "piped", "--json"], ["runs"], ["host", "--json"]):
        _quiet(_into_closed_pipe(*cli, *command, "--socket", str(daemon.socket)))
    daemon.client.stop("piped")


def test_long_output_piped_to_head_ends_quietly(daemon: DaemonProcess) -> None:
    run_dir = _launched(daemon, "long")
    lines = "".join(f'{{"step": {s}, "total": 1.5, "talker": 1.0, "code_predictor": 0.5}}\n' for s in range(1, 5001))
    (run_dir / "losses.jsonl").write_text(lines)
    command = (f"set -o pipefail; {sys.executable} -m qwen_daemon history long --json --socket {daemon.socket} "
               "| head -c 10")
    started = time.monotonic()
    done = subprocess.run(["bash", "-c", command], capture_output=True, env=python_env(), cwd=REPO, timeout=60)
    assert len(done.stdout) == 10 and time.monotonic() - started < 30
    _quiet(done)  # 2000 points of JSON are far more than a pipe holds: the CLI met the closed pipe
    full = subprocess.run([sys.executable, "-m", "qwen_daemon", "history", "long", "--json", "--socket",
                           str(daemon.socket)], capture_output=True, env=python_env(), cwd=REPO, timeout=60)
    assert full.returncode == 0 and len(full.stdout) > 1 << 17  # the output the pipe could not take
    daemon.client.stop("long")


def test_a_command_without_a_daemon_into_a_closed_pipe_ends_quietly() -> None:
    for env in ({}, {"PYTHONUNBUFFERED": ""}):  # the write fails at print(), or only at the flush before exit
        _quiet(_into_closed_pipe(sys.executable, "-m", "qwen_daemon", "classify", "general", "Swedish", "support",
                                 env=env))


def test_both_entry_points_are_wrapped() -> None:
    """argparse swallows write errors of --help, and the dashboard writes to a terminal: the wrapping is what
    there is to check for qwen-tui (qwen-daemon's is exercised above)."""
    from qwen_daemon.cli.main import main as daemon_main
    from qwen_tui.cli import main as tui_main

    for main in (daemon_main, tui_main):
        assert getattr(main, "__wrapped__", None) is not None, main
        assert main.__code__ is not main.__wrapped__.__code__  # type: ignore[attr-defined]
