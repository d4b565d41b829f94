"""One round trip to the daemon, as a value the UI can apply in a single step.

The client is blocking, so `fetch_snapshot` runs in a worker thread and hands
the UI a complete, immutable `Snapshot`. Failures are split by what they
affect: an unreachable daemon (or a failing run list) is a connection problem
for the whole screen; a failing /host only blanks the host bar; a failing
detail (an unknown run name, say) only concerns the detail screen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from qwen_daemon.client import DaemonClient, DaemonError
from qwen_daemon.protocol import HostView, RunDetail, RunView


@dataclass(frozen=True)
class Snapshot:
    """What the daemon said at `fetched_at`."""

    fetched_at: float
    runs: tuple[RunView, ...]
    host: HostView | None = None
    host_error: str | None = None
    detail_name: str | None = None
    detail: RunDetail | None = None
    detail_error: str | None = None

    def run(self, name: str) -> RunView | None:
        for view in self.runs:
            if view.name == name:
                return view
        return None


@dataclass(frozen=True)
class Connection:
    """Whether the last poll reached the daemon, and when one last did."""

    error: str | None = None
    last_ok: float | None = None
    interval: float = 1.0


def fetch_snapshot(client: DaemonClient, detail_name: str | None = None) -> Snapshot:
    """Blocking. Raises DaemonError only when the run list itself cannot be had."""
    runs = client.runs().runs
    host: HostView | None = None
    host_error: str | None = None
    try:
        host = client.host()
    except DaemonError as exc:
        if exc.status == 0:
            raise
        host_error = str(exc)
    detail: RunDetail | None = None
    detail_error: str | None = None
    if detail_name is not None:
        try:
            detail = client.run(detail_name)
        except DaemonError as exc:
            if exc.status == 0:
                raise
            detail_error = str(exc)
    return Snapshot(
        fetched_at=time.time(),
        runs=tuple(runs),
        host=host,
        host_error=host_error,
        detail_name=detail_name,
        detail=detail,
        detail_error=detail_error,
    )
