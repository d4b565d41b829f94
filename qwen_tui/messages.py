"""Requests that screens send up to the app.

Screens know which run the operator means; only the app talks to the daemon.
Keeping the daemon calls in one place means one confirmation flow and one
place that reports what happened.
"""

from __future__ import annotations

from textual.message import Message


class OpenRun(Message):
    """Show the detail screen of run `name`."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.run_name = name


class StopRequested(Message):
    """The operator asked to stop run `name`; the app confirms before acting."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.run_name = name
