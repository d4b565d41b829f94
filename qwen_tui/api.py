"""The dashboard's daemon client: DaemonClient plus the routes it does not wrap yet.

protocol.py already names GET /runs/{name}/history, GET /runs/{name}/diagnosis
and POST /runs/{name}/diagnose, but qwen_daemon/client.py has no methods for
them yet. This subclass adds them through the client's own request path, so
the socket handling, error decoding (DaemonError with the daemon's message)
and reply validation stay the client's. Once client.py has these methods,
this class is the place to drop.
"""

from __future__ import annotations

import urllib.parse

import msgspec

from qwen_daemon.client import DaemonClient
from qwen_daemon.protocol import DiagnoseRequest, RunHistory, RunView
from qwen_train.status import Diagnosis


def _run_path(name: str, tail: str) -> str:
    """Run names are checked by the daemon; quoting keeps a bad one a bad name, not another route."""
    return f"/runs/{urllib.parse.quote(name, safe='')}/{tail}"


class DashboardClient(DaemonClient):
    def history(self, name: str) -> RunHistory:
        """Per-step losses and evals of the run's active launch (downsampled by the daemon)."""
        return self._request("GET", _run_path(name, "history"), RunHistory)

    def diagnosis(self, name: str) -> Diagnosis:
        """The run's non-finite diagnosis; DaemonError 404 until one exists."""
        return self._request("GET", _run_path(name, "diagnosis"), Diagnosis)

    def diagnose(self, name: str, step: int | None = None) -> RunView:
        """Start a `diagnose` job replaying `name` to `step` (None: its last non-finite event)."""
        body = msgspec.json.encode(DiagnoseRequest(step=step))
        return self._request("POST", _run_path(name, "diagnose"), RunView, body)
