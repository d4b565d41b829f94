"""The trainer's side of status.json: identity once, progress every step.

A status.json that cannot be rewritten (the disk is full) keeps its last good
content: the write is atomic, so the temp file goes and the old one stays. The
update raises DiskFull, which ends the run `failed_disk_full`; its last words
go through `last_words`, which never raises, since the disk that refused the
heartbeat may refuse the final status too.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import msgspec

from qwen_train.disk import DiskFull, disk_writes
from qwen_train.status import STATUS_FILE, Event, Status, TrainerState, write_status

MAX_EVENTS = 200


class Heartbeat:
    """Holds the launch identity (run id, nonce, host, pid, container) and the latest status."""

    def __init__(self, run_dir: Path, run_id: str, nonce: str, max_steps: int) -> None:
        now = time.time()
        self.run_dir = run_dir
        self.enabled = True  # only the main process writes under `accelerate launch`
        self.status = Status(
            run_id=run_id,
            nonce=nonce,
            host=socket.gethostname(),
            pid=os.getpid(),
            container=os.environ.get("QWEN_CONTAINER_ID") or None,
            state="starting",
            heartbeat=now,
            started_at=now,
            max_steps=max_steps,
        )
        self.written: Status | None = None  # what status.json last took: its content when a write fails

    def update(self, **fields: Any) -> Status:
        """Merge fields, stamp the heartbeat, write atomically."""
        self.status = msgspec.structs.replace(self.status, heartbeat=time.time(), **fields)
        if self.enabled:
            with disk_writes(STATUS_FILE, self.run_dir):
                write_status(self.run_dir, self.status)
            self.written = self.status
        return self.status

    def last_words(self, state: TrainerState, message: str, event: str) -> bool:
        """The final state and an event saying why, in one write if the disk lets it; False when it did not."""
        said = Event(time=time.time(), kind=event, message=message, step=self.status.step)
        try:
            self.update(state=state, message=message, events=[*self.status.events, said][-MAX_EVENTS:])
        except DiskFull:
            return False
        return True

    def state(self, state: TrainerState, message: str | None = None) -> Status:
        return self.update(state=state, message=message)

    def event(self, kind: str, message: str, step: int | None = None) -> Status:
        ev = Event(time=time.time(), kind=kind, message=message, step=step)
        events = [*self.status.events, ev][-MAX_EVENTS:]
        return self.update(events=events)
