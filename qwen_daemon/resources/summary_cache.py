"""Per-run resource summaries and series, recomputed only as often as they are worth.

A week-long run has ~120k samples; summarising them takes seconds, and the
dashboard asks for a run's detail every second (and its series every few).
An ended run's summary and series never change, so they are kept until the
run is launched again. An active run's are recomputed once they are older
than the larger of one sampler period and 20 times what the last computation
cost: a small run's are always fresh, a huge one's cost the daemon at most
~5% of a core per run being watched. A series is kept per number of points
asked for; only the newest MAX_SERIES of those are kept.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import msgspec

from qwen_daemon.protocol import ResourceSummary, RunResources
from qwen_daemon.resources.series import run_series
from qwen_daemon.resources.summary import Window, summarize
from qwen_daemon.runs.registry import Launch, Registry

COST_FACTOR = 20.0
MAX_SERIES = 32
V = TypeVar("V")


class _Entry(msgspec.Struct, Generic[V], frozen=True):
    launches: list[Launch]
    computed_at: float
    cost_s: float
    value: V


class _Cache(Generic[V]):
    """Values keyed by K, each computed from a run's launches and kept while fresh (see the module)."""

    def __init__(self, period_s: float, limit: int | None = None) -> None:
        self.period_s = period_s
        self.limit = limit
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, int], _Entry[V]] = {}

    def _fresh(self, entry: _Entry[V], launches: list[Launch], now: float) -> bool:
        if entry.launches != launches:
            return False
        if all(launch.ended_at is not None for launch in launches):
            return True
        return now - entry.computed_at < max(self.period_s, COST_FACTOR * entry.cost_s)

    def get(self, key: tuple[str, int], launches: list[Launch], now: float, compute: Callable[[], V]) -> V:
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and self._fresh(entry, launches, now):
            return entry.value
        started = time.monotonic()
        value = compute()
        with self._lock:
            self._entries.pop(key, None)  # re-inserted last: the dict's order is the age order
            self._entries[key] = _Entry(launches, now, time.monotonic() - started, value)
            while self.limit is not None and len(self._entries) > self.limit:
                del self._entries[next(iter(self._entries))]
        return value


class SummaryCache:
    def __init__(self, registry: Registry, period_s: float) -> None:
        self.registry = registry
        self.period_s = period_s
        self._summaries: _Cache[ResourceSummary] = _Cache(period_s)
        self._series: _Cache[RunResources] = _Cache(period_s, MAX_SERIES)

    def get(self, name: str, now: float) -> ResourceSummary:
        """The summary of `name` over all its launches, from the cache when still fresh."""
        launches = self.registry.launches(name)
        return self._summaries.get((name, 0), launches, now, lambda: self.compute(name, launches, now))

    def series(self, name: str, points: int, now: float) -> RunResources:
        """The resource series of `name` in at most `points` buckets, from the cache when still fresh."""
        launches = self.registry.launches(name)
        return self._series.get(
            (name, points), launches, now,
            lambda: run_series(name, self.windows(name, launches, now), self.period_s, points),
        )

    def windows(self, name: str, launches: list[Launch], now: float) -> list[Window]:
        windows = []
        for launch in launches:
            end = launch.ended_at if launch.ended_at is not None else now
            windows.append(Window(launch.started_at, end, self.registry.samples(name, launch.started_at, end)))
        return windows

    def compute(self, name: str, launches: list[Launch], now: float) -> ResourceSummary:
        return summarize(self.windows(name, launches, now), self.period_s, name)
