"""What `qwen-run@NAME.service` runs: ask the daemon to launch NAME, then follow it.

The unit's start is `qwen-daemon unit-run NAME`: it launches the run from
SPEC_DIR/NAME.json (or resumes it, if the daemon knows NAME and it ended
resumably; or simply follows it, if it is already active), tells systemd
READY with a STATUS line, keeps STATUS current (state, step, loss), and exits
when the run ends: 0 for completed or stopped, 1 otherwise, so systemd's
view of the unit matches the run. The unit's stop is `qwen-daemon stop NAME
--wait`: a graceful stop that returns once the trainer has checkpointed and
exited. The daemon stays the one place that launches trainers.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from types import FrameType

from qwen_daemon.protocol import PENDING_STATES, RunView
from qwen_daemon.protocol.client import DaemonClient, DaemonError
from qwen_daemon.systemd.notify import notify

DEFAULT_SPEC_DIR = Path("/etc/qwen-hemma/runs")
RESUMABLE = frozenset({"stopped", "interrupted"})
GOOD_ENDS = frozenset({"completed", "stopped"})


def _status_line(view: RunView) -> str:
    parts = [f"run {view.name}: {view.state} ({view.health})"]
    if view.step is not None:
        parts.append(f"step {view.step}/{view.max_steps or '?'}")
    if view.loss is not None:
        parts.append(f"loss {view.loss:.4g}")
    if view.stale_reason:
        parts.append(f"stale: {view.stale_reason}")
    return ", ".join(parts)


def start_or_attach(client: DaemonClient, name: str, spec_dir: Path) -> RunView:
    """Launch, resume or attach, whichever the run's current state calls for."""
    try:
        current: RunView | None = client.run(name).run
    except DaemonError as exc:
        if exc.status != 404:
            raise
        current = None
    if current is not None and current.state in PENDING_STATES:
        return current
    if current is not None and current.state in RESUMABLE:
        return client.resume(name)
    spec = spec_dir / f"{name}.json"
    if not spec.is_file():
        raise DaemonError(0, f"no spec for run {name}: write {spec} (a run spec whose name is {name!r})")
    return client.launch(spec_path=str(spec.absolute()))


def follow(client: DaemonClient, name: str, spec_dir: Path, poll_s: float = 2.0) -> int:
    """The unit's main process; returns its exit status."""
    stopping = False

    def _on_term(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True  # ExecStop has already stopped the run; just report how it ended

    signal.signal(signal.SIGTERM, _on_term)
    try:
        view = start_or_attach(client, name, spec_dir)
    except DaemonError as exc:
        print(f"qwen-run@{name}: {exc}", file=sys.stderr)
        return 1
    notify(f"READY=1\nSTATUS={_status_line(view)}")
    print(f"qwen-run@{name}: following run {name} (nonce {view.nonce})", flush=True)
    misses = 0
    while True:
        try:
            view = client.run(name).run
            misses = 0
        except DaemonError as exc:
            misses += 1
            notify(f"STATUS=daemon not answering ({exc}); still waiting")
            if misses * poll_s > 600:
                print(f"qwen-run@{name}: the daemon has not answered for 10 minutes: {exc}", file=sys.stderr)
                return 1
            time.sleep(poll_s)
            continue
        notify(f"STATUS={_status_line(view)}")
        if view.state not in PENDING_STATES:
            print(f"qwen-run@{name}: run ended {view.state}: {view.message or ''}", flush=True)
            return 0 if view.state in GOOD_ENDS else 1
        time.sleep(0.2 if stopping else poll_s)


def stop_and_wait(client: DaemonClient, name: str, timeout_s: float) -> int:
    """Graceful stop, then wait for the run to end (the trainer's final checkpoint)."""
    view = client.stop(name)
    deadline = time.monotonic() + timeout_s
    while view.state in PENDING_STATES:
        if time.monotonic() > deadline:
            print(f"qwen-daemon: run {name} still {view.state} after {timeout_s:g} s", file=sys.stderr)
            return 1
        time.sleep(0.5)
        view = client.run(name).run
    print(f"run {name} {view.state}: {view.message or ''}")
    return 0
