"""The trainer's side of status.json: identity once, progress every step."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import msgspec

from qwen_train.status import Event, Status, TrainerState, write_status

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

    def update(self, **fields: Any) -> Status:
        """Merge fields, stamp the heartbeat, write atomically."""
        self.status = msgspec.structs.replace(self.status, heartbeat=time.time(), **fields)
        if self.enabled:
            write_status(self.run_dir, self.status)
        return self.status

    def state(self, state: TrainerState, message: str | None = None) -> Status:
        return self.update(state=state, message=message)

    def event(self, kind: str, message: str, step: int | None = None) -> Status:
        ev = Event(time=time.time(), kind=kind, message=message, step=step)
        events = [*self.status.events, ev][-MAX_EVENTS:]
        return self.update(events=events)
