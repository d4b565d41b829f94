"""A run's resources over time: every metric as a series of at most N points, gaps kept as gaps.

The dashboard draws one glyph per point, so the daemon downsamples: a week of
5 s samples is 120k rows, and the answer must stay small. Pure functions over
launch windows (summary.Window), like the summary, so the arithmetic is
tested without a sampler.

The time axis is the run's launch time: the launches laid end to end. The
hours between a stop and its resume are left out (the run was not running,
which is no sampler gap, as in the summary); the bucket in which a later
launch starts is marked `relaunch`. The axis is cut into equal buckets, but
never narrower than GAP_PERIODS sampler periods: a bucket without any sample
then always lies in a gap, so an empty bucket is a gap and not an artefact of
the cut.

Per bucket and metric the series carries the median (what the sparkline
draws: one odd sample does not move it) and the max (the peak: memory runs out
at the peak, not at the median). A bucket that overlaps a gap (find_gaps: more
than GAP_PERIODS periods without a sample) is flagged, and a metric with no
sample in a bucket is None there, never zero.
"""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from qwen_daemon.protocol import DEFAULT_POINTS, MAX_POINTS, Gap, MetricSeries, ResourceBucket, RunResources
from qwen_daemon.resources.summary import GAP_PERIODS, Window, find_gaps, metric_values


@dataclass(frozen=True)
class Axis:
    """The launches laid end to end: `offsets[i]` is where window i starts on the axis."""

    windows: Sequence[Window]
    offsets: list[float]
    length: float

    @classmethod
    def of(cls, windows: Sequence[Window]) -> Axis:
        offsets: list[float] = []
        length = 0.0
        for window in windows:
            offsets.append(length)
            length += max(window.end - window.start, 0.0)
        return cls(windows, offsets, length)

    def position(self, index: int, time: float) -> float:
        """Where wall time `time` inside window `index` lies on the axis."""
        return self.offsets[index] + (time - self.windows[index].start)

    def wall(self, position: float, opening: bool) -> float:
        """The wall time of an axis position; at a joint of two launches, an `opening` edge takes the later."""
        offsets = self.offsets
        index = bisect.bisect_right(offsets, position) - 1 if opening else bisect.bisect_left(offsets, position) - 1
        index = min(max(index, 0), len(offsets) - 1)
        return self.windows[index].start + (position - offsets[index])


def bucket_count(length: float, period_s: float, points: int) -> int:
    """At most `points`, each bucket at least GAP_PERIODS periods long, and at least one."""
    return max(1, min(points, int(length // (GAP_PERIODS * period_s))))


def _edges(axis: Axis, count: int) -> list[float]:
    width = axis.length / count
    return [index * width for index in range(count)] + [axis.length]


def _bucket_of(edges: list[float], position: float) -> int:
    return min(max(bisect.bisect_right(edges, position) - 1, 0), len(edges) - 2)


def _overlaps(edges: list[float], index: int, start: float, end: float) -> bool:
    return start < edges[index + 1] and end > edges[index]


def _gaps_on_axis(axis: Axis, period_s: float) -> tuple[list[Gap], list[tuple[float, float]]]:
    """The summary's gaps (wall time) and the same stretches on the axis."""
    wall: list[Gap] = []
    placed: list[tuple[float, float]] = []
    for index, window in enumerate(axis.windows):
        for gap in find_gaps(window, period_s):
            wall.append(gap)
            placed.append((axis.position(index, gap.start), axis.position(index, gap.end)))
    return wall, placed


def _collect(
    axis: Axis, edges: list[float], run: str | None
) -> tuple[list[int], dict[str, list[list[float]]], dict[str, float]]:
    """Each sample's metric values into its bucket: (samples per bucket, values per metric and bucket, last)."""
    count = len(edges) - 1
    per_bucket = [0] * count
    values: dict[str, list[list[float]]] = {}
    last: dict[str, float] = {}
    for index, window in enumerate(axis.windows):
        for sample in window.samples:
            bucket = _bucket_of(edges, axis.position(index, sample.time))
            per_bucket[bucket] += 1
            for name, value in metric_values(sample, run).items():
                if name not in values:
                    values[name] = [[] for _ in range(count)]
                values[name][bucket].append(value)
                last[name] = value
    return per_bucket, values, last


def _series(buckets: list[list[float]], last: float | None) -> MetricSeries:
    return MetricSeries(
        median=[float(statistics.median(b)) if b else None for b in buckets],
        max=[max(b) if b else None for b in buckets],
        last=last,
    )


def _buckets(axis: Axis, edges: list[float], per_bucket: list[int], gaps: list[tuple[float, float]]) -> list[
    ResourceBucket
]:
    relaunches = {_bucket_of(edges, offset) for offset in axis.offsets[1:]}
    return [
        ResourceBucket(
            start=axis.wall(edges[index], opening=True),
            end=axis.wall(edges[index + 1], opening=False),
            samples=per_bucket[index],
            gap=any(_overlaps(edges, index, start, end) for start, end in gaps),
            relaunch=index in relaunches,
        )
        for index in range(len(per_bucket))
    ]


def run_series(
    name: str, windows: Sequence[Window], period_s: float, points: int = DEFAULT_POINTS, run: str | None = None
) -> RunResources:
    """The run's metrics over its launch windows (oldest first), in at most `points` buckets.

    `run` names whose own share (run_cpu_percent, ...) the samples carry; by default `name`.
    """
    if not 1 <= points <= MAX_POINTS:
        raise ValueError(f"points must be in [1, {MAX_POINTS}], got {points}")
    samples = sum(len(window.samples) for window in windows)
    notes = [s.gpu_note for w in windows for s in w.samples if s.gpu_note]
    if not windows:
        return RunResources(name=name, period_s=period_s, points=points, samples=0)
    axis = Axis.of(windows)
    edges = _edges(axis, bucket_count(axis.length, period_s, points))
    wall_gaps, axis_gaps = _gaps_on_axis(axis, period_s)
    per_bucket, values, last = _collect(axis, edges, name if run is None else run)
    return RunResources(
        name=name,
        period_s=period_s,
        points=points,
        samples=samples,
        buckets=_buckets(axis, edges, per_bucket, axis_gaps),
        metrics={metric: _series(values[metric], last.get(metric)) for metric in sorted(values)},
        gaps=wall_gaps,
        gpu_note=notes[-1] if notes else None,
    )
