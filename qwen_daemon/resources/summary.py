"""A run's resource summary: median/min/max/p95 per metric, and the gaps.

Pure functions over samples, so the arithmetic is tested without a sampler.
A run's life is one window per launch (a resumed run has several); the
statistics pool every window's samples, the gaps are found per window. A gap
is any stretch longer than 3 sampler periods with no sample (at the start of
a launch, between samples, or up to its end): shown as a gap, never as zeros.
`span_s` is the launches' covered time, so the time between a stop and a
resume is neither a gap nor part of what the gaps are measured against.
The summary names the GPU reader the samples came from and whether the host
had a GPU at all, so "no GPU metrics" can be told from "a GPU went unread".
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import NamedTuple

from qwen_daemon.protocol import Gap, MetricStats, ResourceSample, ResourceSummary
from qwen_daemon.protocol.resources import ProcessMemory

GAP_PERIODS = 3.0


class Window(NamedTuple):
    """One launch's time span and the samples taken during it, oldest first."""

    start: float
    end: float
    samples: Sequence[ResourceSample]


def metric_values(sample: ResourceSample, run: str | None = None) -> dict[str, float]:
    """Flatten a sample into the named metrics the summary reports (with `run`'s own share)."""
    values: dict[str, float] = {
        "cpu_percent": sample.cpu_percent,
        "ram_used_bytes": float(sample.ram_used_bytes),
    }
    for gpu in sample.gpus:  # only what was read in this sample: an unread busy figure is no 0
        if gpu.busy_percent is not None:
            values[f"gpu{gpu.index}_busy_percent"] = gpu.busy_percent
        if gpu.vram_read_now and gpu.vram_used_bytes is not None:
            values[f"gpu{gpu.index}_vram_used_bytes"] = float(gpu.vram_used_bytes)
    usage = sample.runs.get(run) if run is not None else None
    if usage is not None:
        values["run_cpu_percent"] = usage.cpu_percent
        values["run_rss_bytes"] = float(usage.rss_bytes)
        if usage.pss_bytes is not None:
            values["run_pss_bytes"] = float(usage.pss_bytes)
        if usage.gpu_memory_bytes is not None:
            values["run_gpu_memory_bytes"] = float(usage.gpu_memory_bytes)
        for index, used in usage.gpu_memory_per_gpu.items():
            values[f"run_gpu{index}_memory_bytes"] = float(used)
        for index, share in usage.gpu_engine_percent_per_gpu.items():
            values[f"run_gpu{index}_engine_percent"] = share
    return values


def gpu_presence(samples: Sequence[ResourceSample]) -> bool | None:
    """True if any sample saw a GPU device, False only if every sample says there was none.

    A sample from before presence was recorded (None) leaves the answer open:
    "no GPU" must be shown, not assumed, for the gate to pass on it.
    """
    seen = [s.gpu_present for s in samples]
    if any(seen):
        return True
    return False if seen and all(value is False for value in seen) else None


def process_memory(samples: Sequence[ResourceSample]) -> dict[str, ProcessMemory]:
    """Per GPU (index as text) whose per-process memory counted more than VRAM (GTT too: an APU), what it
    counted, as the newest sample naming the GPU says; a run's GPU memory there is not VRAM alone."""
    counted: dict[str, ProcessMemory] = {}
    for sample in samples:
        for gpu in sample.gpus:
            counted[str(gpu.index)] = gpu.process_memory
    return {index: what for index, what in sorted(counted.items()) if what != "vram"}


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def metric_stats(values: Sequence[float]) -> MetricStats:
    return MetricStats(
        count=len(values),
        median=float(statistics.median(values)),
        min=float(min(values)),
        max=float(max(values)),
        p95=percentile(values, 95.0),
    )


def find_gaps(window: Window, period_s: float) -> list[Gap]:
    """Stretches of `window` longer than GAP_PERIODS periods without a sample."""
    limit = GAP_PERIODS * period_s
    times = [window.start, *(s.time for s in window.samples), window.end]
    return [Gap(start=a, end=b) for a, b in zip(times, times[1:], strict=False) if b - a > limit]


def summarize(windows: Sequence[Window], period_s: float, run: str | None = None) -> ResourceSummary:
    """Pool the windows' samples into per-metric statistics and list every gap."""
    samples = [s for w in windows for s in w.samples]
    pooled: dict[str, list[float]] = {}
    for sample in samples:
        for name, value in metric_values(sample, run).items():
            pooled.setdefault(name, []).append(value)
    notes = [s.gpu_note for s in samples if s.gpu_note]
    backends = [s.gpu_backend for s in samples if s.gpu_backend]
    return ResourceSummary(
        samples=len(samples),
        first=samples[0].time if samples else None,
        last=samples[-1].time if samples else None,
        metrics={name: metric_stats(values) for name, values in sorted(pooled.items())},
        gaps=[gap for w in windows for gap in find_gaps(w, period_s)],
        gpu_note=notes[-1] if notes else None,
        span_s=sum(max(0.0, w.end - w.start) for w in windows) if windows else None,
        gpu_backend=backends[-1] if backends else None,
        gpu_present=gpu_presence(samples),
        gpu_process_memory=process_memory(samples),
    )
