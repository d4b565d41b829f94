"""Where the time to a run's first step goes, phase by phase, said while it goes.

A full-size run on an H100 took 80 s from launch to its first step (35 s on a
resume) with nothing on the screen but "loading model and bundle"; on Hemma's
slower card and disk the wait is longer, and an operator cannot tell a slow
start from a hung one. Each phase names itself in status.json's message as it
begins, and when the first step is done the whole account (each phase with its
seconds) goes to status.json's `startup`, the run's events and the log.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from qwen_train.train.heartbeat import Heartbeat


class Startup:
    """The phases of one launch, timed in order; `first_step` closes the account."""

    def __init__(self, heartbeat: Heartbeat) -> None:
        self.heartbeat = heartbeat
        self.began = time.perf_counter()
        self.phases: list[tuple[str, float]] = []
        self.finished = False

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.heartbeat.update(message=f"starting: {name} ({self._so_far():.0f} s since launch)")
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phases.append((name, time.perf_counter() - start))

    def first_step(self, seconds: float, compiling: bool) -> None:
        """The first optimizer step took `seconds` (torch.compile's graphs are built in it when `compiling`)."""
        if self.finished:
            return
        self.finished = True
        self.phases.append(("first step, compiling included" if compiling else "first step", seconds))
        text = self.text()
        said = self.heartbeat.status.message or ""
        self.heartbeat.update(startup=text, **({"message": None} if said.startswith("starting: ") else {}))
        self.heartbeat.event("startup", text)
        if self.heartbeat.enabled:
            print(f"qwen-train: startup: {text}", file=sys.stderr, flush=True)

    def text(self) -> str:
        parts = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.phases)
        return f"{self._so_far():.1f} s to the first step: {parts}"

    def _so_far(self) -> float:
        return time.perf_counter() - self.began
