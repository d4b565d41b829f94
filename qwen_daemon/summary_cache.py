"""Per-run resource summaries, recomputed only as often as they are worth.

A week-long run has ~120k samples; summarising them takes seconds, and the
dashboard asks for a run's detail every second. An ended run's summary never
changes, so it is kept until the run is launched again. An active run's is
recomputed once it is older than the larger of one sampler period and 20
times what the last computation cost: a small run's summary is always fresh,
a huge one's costs the daemon at most ~5% of a core per run being watched.
"""

from __future__ import annotations

import threading
import time

import msgspec

from qwen_daemon.registry import Launch, Registry
from qwen_daemon.resources import ResourceSummary
from qwen_daemon.summary import Window, summarize

COST_FACTOR = 20.0


class _Entry(msgspec.Struct, frozen=True):
    launches: list[Launch]
    computed_at: float
    cost_s: float
    summary: ResourceSummary


class SummaryCache:
    def __init__(self, registry: Registry, period_s: float) -> None:
        self.registry = registry
        self.period_s = period_s
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    def _fresh(self, entry: _Entry, launches: list[Launch], now: float) -> bool:
        if entry.launches != launches:
            return False
        if all(launch.ended_at is not None for launch in launches):
            return True
        return now - entry.computed_at < max(self.period_s, COST_FACTOR * entry.cost_s)

    def get(self, name: str, now: float) -> ResourceSummary:
        """The summary of `name` over all its launches, from the cache when still fresh."""
        launches = self.registry.launches(name)
        with self._lock:
            entry = self._entries.get(name)
        if entry is not None and self._fresh(entry, launches, now):
            return entry.summary
        started = time.monotonic()
        summary = self.compute(name, launches, now)
        entry = _Entry(launches, now, time.monotonic() - started, summary)
        with self._lock:
            self._entries[name] = entry
        return summary

    def compute(self, name: str, launches: list[Launch], now: float) -> ResourceSummary:
        windows = []
        for launch in launches:
            end = launch.ended_at if launch.ended_at is not None else now
            windows.append(Window(launch.started_at, end, self.registry.samples(name, launch.started_at, end)))
        return summarize(windows, self.period_s, name)
