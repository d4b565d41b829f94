"""Busy shares from cumulative engine time: how much of the time between two readings an engine worked.

DRM fdinfo (and amdsmi's process list) report, per client and engine, the
nanoseconds the engine spent on the client's work so far. A share needs two
readings, so the tracker keeps each client's previous one; a client seen for
the first time has no share yet, never a share of zero. The kernel's
drm-usage-stats document allows a counter to step back briefly and asks
readers to hold the larger previous value until it catches up, which is what
`_held` does. Capacity (drm-engine-capacity-*) is how many identical engines a
name stands for; the share is of all of them. An engine missing from the
previous reading of a known client had done nothing yet (amdgpu prints an
engine only once it has worked), so its whole counter is new work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field


@dataclass
class _Seen:
    at_ns: int
    engines: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class EngineReading:
    """One client's counters at one reading: who it is (`key`, stable across readings), whose and on which GPU."""

    key: Hashable
    pid: int
    gpu: int
    engines: Mapping[str, int]
    capacity: Mapping[str, int] = field(default_factory=dict)


class EngineTracker:
    """Turns successive engine-time readings into per-process busy percentages. Thread-safe."""

    def __init__(self, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self._clock = clock
        self._seen: dict[Hashable, _Seen] = {}
        self._lock = threading.Lock()

    def update(self, readings: list[EngineReading]) -> dict[int, dict[int, dict[str, float]]]:
        """Host pid -> {GPU index: {engine: percent}} over the time since each client's previous reading."""
        shares: dict[int, dict[int, dict[str, float]]] = {}
        with self._lock:
            now = self._clock()
            current: dict[Hashable, _Seen] = {}
            for reading in readings:
                before = self._seen.get(reading.key)
                held = _held(before, reading.engines)
                current[reading.key] = _Seen(now, held)
                if before is None or now <= before.at_ns:
                    continue
                elapsed = now - before.at_ns
                engines = shares.setdefault(reading.pid, {}).setdefault(reading.gpu, {})
                for engine, busy in held.items():
                    grew = busy - before.engines.get(engine, 0)  # amdgpu omits an engine until it has worked
                    capacity = max(1, reading.capacity.get(engine, 1))
                    share = 100.0 * grew / (elapsed * capacity)
                    engines[engine] = engines.get(engine, 0.0) + min(100.0, max(0.0, share))
            self._seen = current  # clients not seen this time are gone: forget them
        return {pid: {gpu: e for gpu, e in gpus.items() if e} for pid, gpus in shares.items()}


def _held(before: _Seen | None, engines: Mapping[str, int]) -> dict[str, int]:
    """The counters to keep: a value lower than the previous one holds the previous one (drm-usage-stats)."""
    if before is None:
        return dict(engines)
    return {name: max(value, before.engines.get(name, value)) for name, value in engines.items()}
