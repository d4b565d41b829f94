"""Shared helpers for the daemon tests: a real `qwen-daemon serve` subprocess.

Not a test module (no tests here). The daemon runs as a subprocess on a short
socket path under /tmp (Unix socket paths must stay under 108 bytes), with
the fake trainer of test_daemon_fake_trainer.py as its `--trainer-python`.
"""

from __future__ import annotations

import http.client
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from qwen_daemon.protocol.client import DaemonClient
from qwen_train.spec import RunSpec, TrainConfig

FAKE_TRAINER = Path(__file__).with_name("test_daemon_fake_trainer.py")
T = TypeVar("T")
START_TIMEOUT_S = 60.0  # a cold start under a loaded 2-core CI takes a few seconds


def wait_until(check: Callable[[], T | None], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy; fail the test with `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {value!r})")
        time.sleep(0.05)


def short_tmp_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="qd-", dir="/tmp"))


def trainer_wrapper(directory: Path) -> Path:
    """An executable the daemon can treat as a python: it execs the fake trainer (same pid)."""
    path = directory / "fake-python"
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_TRAINER}" "$@"\n')
    path.chmod(0o755)
    return path


def make_spec(root: Path, name: str, max_steps: int = 1000) -> RunSpec:
    """An inline spec whose model and bundle paths exist (the daemon checks)."""
    (root / "model").mkdir(exist_ok=True)
    (root / "bundle").mkdir(exist_ok=True)
    return RunSpec(
        name=name, lane="benchmark", model=str(root / "model"), bundle=str(root / "bundle"),
        train=TrainConfig(max_steps=max_steps),
    )


class DaemonProcess:
    """`python -m qwen_daemon serve` on a private state dir and socket."""

    def __init__(self, state_dir: Path, sock: Path, trainer: Path, *extra: str,
                 env: dict[str, str] | None = None) -> None:
        """`env`: added to the daemon's environment, which it passes on to every job it launches."""
        self.state_dir = state_dir
        self.env = env or {}
        self.socket = sock
        self.trainer = trainer
        self.extra = extra
        self.log_path = state_dir / "daemon.log"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> DaemonProcess:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "qwen_daemon", "serve", "--state-dir", str(self.state_dir),
            "--socket", str(self.socket), "--trainer-python", str(self.trainer), *self.extra,
        ]
        env = {**{k: v for k, v in os.environ.items() if k != "QWEN_DAEMON_SOCKET"}, **self.env}
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT_S)
        if not ready:  # a daemon stuck before serving: say so now rather than at pytest's timeout
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the daemon did not serve within {START_TIMEOUT_S:g} s:\n{self.log()}")
        line = self.proc.stdout.readline()
        assert line.strip() == f"qwen-daemon serving on {self.socket}", (line, self.log())
        assert self.socket.exists()
        return self

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=15)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code

    @property
    def client(self) -> DaemonClient:
        return DaemonClient(self.socket)

    def run_dir(self, name: str) -> Path:
        return self.state_dir / "runs" / name


def raw_request(
    sock: Path, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """A request the typed client would never send; returns (status, decoded JSON body)."""

    class Conn(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(10)
            self.sock.connect(str(sock))

    conn = Conn("localhost", timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, msgspec.json.decode(raw)
    finally:
        conn.close()


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its new parent) is not alive
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def plain_daemon() -> Iterator[DaemonProcess]:
    """A daemon on a short temp dir with the fake trainer and no journal, stopped and removed afterwards:
    the body of a module fixture for tests that only talk to its socket."""
    root = short_tmp_dir()
    proc = DaemonProcess(root / "state", root / "d.sock", trainer_wrapper(root), "--journal-socket", "").start()
    try:
        yield proc
    finally:
        proc.stop()
        remove_tree(root)
