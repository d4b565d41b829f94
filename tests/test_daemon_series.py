"""A run's resource series on constructed samples: bounded points, per-bucket median/max, gaps as gaps."""

from __future__ import annotations

import statistics

import pytest

from qwen_daemon.protocol import MAX_POINTS, Gap, GpuSample, ResourceSample, RunResources, RunUsage
from qwen_daemon.resources.series import run_series
from qwen_daemon.resources.summary import GAP_PERIODS, Window, metric_values, summarize

GIB = 1024**3


def sample(t: float, cpu: float, run: bool = True) -> ResourceSample:
    usage = {"r": RunUsage(2, cpu / 2, int(cpu) * GIB, gpu_memory_bytes=3 * GIB, gpu_memory_per_gpu={"0": 3 * GIB})}
    gpu = GpuSample(0, "H100", cpu, int(cpu) * GIB, 80 * GIB)
    return ResourceSample(t, cpu, int(cpu * 100), 10_000, [gpu], runs=usage if run else {})


def in_bucket(series: RunResources, index: int, samples: list[ResourceSample]) -> list[ResourceSample]:
    bucket = series.buckets[index]
    last = index == len(series.buckets) - 1
    return [s for s in samples if bucket.start <= s.time and (s.time < bucket.end or last and s.time == bucket.end)]


def test_points_are_bounded_and_every_sample_lands_in_one_bucket() -> None:
    samples = [sample(float(t), float(t % 17)) for t in range(0, 1000)]
    for points in (1, 7, 120, MAX_POINTS):
        series = run_series("r", [Window(0.0, 999.0, samples)], period_s=1.0, points=points)
        assert 1 <= len(series.buckets) <= points
        assert sum(b.samples for b in series.buckets) == series.samples == 1000
        assert all(len(m.median) == len(m.max) == len(series.buckets) for m in series.metrics.values())
        assert all(b.end - b.start >= GAP_PERIODS * 1.0 - 1e-9 for b in series.buckets)  # never narrower
    assert len(run_series("r", [Window(0.0, 999.0, samples)], 1.0, points=MAX_POINTS).buckets) == 333


def test_each_bucket_is_the_median_and_max_of_its_samples() -> None:
    samples = [sample(float(t), float((t * 37) % 101)) for t in range(0, 300)]
    series = run_series("r", [Window(0.0, 299.0, samples)], period_s=1.0, points=11)
    assert len(series.buckets) == 11
    for index in range(11):
        mine = in_bucket(series, index, samples)
        assert len(mine) == series.buckets[index].samples > 0
        for name, metric in series.metrics.items():
            values = [metric_values(s, "r")[name] for s in mine]
            assert metric.median[index] == statistics.median(values), (name, index)
            assert metric.max[index] == max(values), (name, index)
    assert series.metrics["cpu_percent"].last == samples[-1].cpu_percent
    assert set(series.metrics) == {
        "cpu_percent", "ram_used_bytes", "gpu0_busy_percent", "gpu0_vram_used_bytes",
        "run_cpu_percent", "run_rss_bytes", "run_gpu_memory_bytes", "run_gpu0_memory_bytes",
    }


def test_a_gap_is_flagged_and_has_no_values_never_zeros() -> None:
    samples = [sample(float(t), 50.0) for t in range(0, 100)] + [sample(float(t), 50.0) for t in range(200, 300)]
    window = Window(0.0, 299.0, samples)
    series = run_series("r", [window], period_s=1.0, points=30)
    assert series.gaps == summarize([window], 1.0, "r").gaps == [Gap(99.0, 200.0)]
    empty = [i for i, b in enumerate(series.buckets) if b.samples == 0]
    assert empty and all(series.buckets[i].gap for i in empty)
    for metric in series.metrics.values():
        assert all(metric.median[i] is None and metric.max[i] is None for i in empty)
        assert 0.0 not in metric.median and 0.0 not in metric.max
    flagged = [b for b in series.buckets if b.gap]
    assert all(b.start < 200.0 and b.end > 99.0 for b in flagged)  # only buckets that touch the gap
    assert not series.buckets[0].gap and not series.buckets[-1].gap


def test_a_run_metric_is_none_where_the_run_had_no_share() -> None:
    samples = [sample(float(t), 10.0, run=t >= 150) for t in range(0, 300)]
    series = run_series("r", [Window(0.0, 299.0, samples)], period_s=1.0, points=10)
    run_cpu = series.metrics["run_cpu_percent"].median
    assert run_cpu[:5] == [None] * 5 and all(v == 5.0 for v in run_cpu[5:])
    assert series.metrics["cpu_percent"].median == [10.0] * 10  # the host is there all along
    assert not any(b.gap for b in series.buckets)  # a missing share is no sampler gap


def test_time_between_launches_is_left_out_and_the_relaunch_is_marked() -> None:
    first = Window(0.0, 100.0, [sample(float(t), 20.0) for t in range(0, 101)])
    second = Window(10_000.0, 10_100.0, [sample(10_000.0 + t, 80.0) for t in range(0, 101)])
    series = run_series("r", [first, second], period_s=1.0, points=20)
    assert len(series.buckets) == 20  # over 200 s of launch time, not 10100 s of wall time
    marked = [i for i, b in enumerate(series.buckets) if b.relaunch]
    assert marked == [10]
    assert series.buckets[10].start == 10_000.0 and series.buckets[9].end == 100.0
    assert series.gaps == [] and not any(b.gap for b in series.buckets)
    assert series.metrics["cpu_percent"].median == [20.0] * 10 + [80.0] * 10


def test_no_launch_no_samples_and_bad_points() -> None:
    assert run_series("r", [], period_s=1.0).buckets == []
    silent = run_series("r", [Window(0.0, 60.0, [])], period_s=1.0, points=5)
    assert silent.samples == 0 and silent.metrics == {} and silent.gaps == [Gap(0.0, 60.0)]
    assert [b.gap for b in silent.buckets] == [True] * 5
    for points in (0, MAX_POINTS + 1):
        with pytest.raises(ValueError, match="points must be in"):
            run_series("r", [], period_s=1.0, points=points)
