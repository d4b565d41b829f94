"""Resource evidence records: one host sample, and a run's summary of them.

Produced by the daemon's sampler; read by the API, the dashboard and the
promotion gate. A gap (no sample for longer than the sampler's period allows)
is recorded as a gap, never filled with zeros.
"""

from __future__ import annotations

import msgspec


class GpuSample(msgspec.Struct, frozen=True):
    index: int
    name: str
    busy_percent: float
    vram_used_bytes: int
    vram_total_bytes: int


class ResourceSample(msgspec.Struct, frozen=True):
    time: float
    cpu_percent: float
    ram_used_bytes: int
    ram_total_bytes: int
    gpus: list[GpuSample] = []
    gpu_note: str | None = None


class MetricStats(msgspec.Struct, frozen=True):
    count: int
    median: float
    min: float
    max: float
    p95: float


class Gap(msgspec.Struct, frozen=True):
    start: float
    end: float


class ResourceSummary(msgspec.Struct, frozen=True):
    """median/min/max/p95 per metric over a run's life (or a window)."""

    samples: int
    first: float | None
    last: float | None
    metrics: dict[str, MetricStats] = {}
    gaps: list[Gap] = []
    gpu_note: str | None = None
