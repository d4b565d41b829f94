"""A daemon thread that calls `tick(now)` every period: the monitor's and the GPU queue's heartbeat.

A tick that raises is logged and the next one tries again: one bad record
must never stop the reaping of all the others, nor the queue. A state write
the disk refused was reported already (state_writes.py): not again each tick.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from qwen_daemon.state_writes import StateWriteError

log = logging.getLogger(__name__)


class Ticker:
    def __init__(self, name: str, period_s: float, tick: Callable[[float], None]) -> None:
        self.name = name
        self.period_s = period_s
        self._tick = tick
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._halt.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._halt.wait(self.period_s):
            try:
                self._tick(time.time())
            except StateWriteError as exc:
                log.debug("%s tick could not write its state (%s); the next tick retries", self.name, exc)
            except Exception:
                log.exception("%s tick failed; the next tick retries", self.name)
