"""Requests that screens send up to the app.

Screens know which run the operator means; only the app talks to the daemon.
Keeping the daemon calls in one place means one confirmation flow and one
place that reports what happened.
"""

from __future__ import annotations

from textual.message import Message

from qwen_tui.actions import VerbName


class OpenRun(Message):
    """Show the detail screen of run `name`."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.run_name = name


class OpenGate(Message):
    """Show the gate screen of run `name` (a diagnose or gate job's: its run's)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.run_name = name


class ActionRequested(Message):
    """The operator asked for an action on `target` (a run name, a spec path); the app confirms first."""

    def __init__(self, verb: VerbName, target: str = "") -> None:
        super().__init__()
        self.verb: VerbName = verb
        self.target = target
