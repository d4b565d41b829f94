"""Resource summary arithmetic on constructed samples: statistics, gaps, no zero-filling."""

from __future__ import annotations

import pytest

from qwen_daemon.protocol import Gap, GpuSample, ResourceSample
from qwen_daemon.resources.summary import Window, metric_values, percentile, summarize

GIB = 2**30


def sample(t: float, cpu: float, ram: int = 4 * GIB, gpu: tuple[float, int] | None = None) -> ResourceSample:
    gpus = []
    if gpu is not None:
        gpus = [GpuSample(index=0, name="H100", busy_percent=gpu[0], vram_used_bytes=gpu[1],
                          vram_total_bytes=80 * GIB)]
    return ResourceSample(time=t, cpu_percent=cpu, ram_used_bytes=ram, ram_total_bytes=64 * GIB, gpus=gpus,
                          gpu_note=None if gpu is not None else "no GPU: NVML library not found")


def test_percentile_interpolates_like_numpy() -> None:
    values = [float(v) for v in range(1, 21)]
    assert percentile(values, 95) == pytest.approx(19.05)
    assert percentile(values, 50) == pytest.approx(10.5)
    assert percentile([3.0], 95) == 3.0
    assert percentile([5.0, 1.0], 100) == 5.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_statistics_per_metric() -> None:
    cpus = [10.0, 50.0, 20.0, 40.0, 30.0]
    samples = [sample(100.0 + 5 * i, cpu, ram=(i + 1) * GIB) for i, cpu in enumerate(cpus)]
    summary = summarize([Window(100.0, 120.0, samples)], period_s=5.0)
    cpu = summary.metrics["cpu_percent"]
    assert (cpu.count, cpu.median, cpu.min, cpu.max) == (5, 30.0, 10.0, 50.0)
    assert cpu.p95 == pytest.approx(48.0)
    ram = summary.metrics["ram_used_bytes"]
    assert (ram.median, ram.min, ram.max) == (3 * GIB, 1 * GIB, 5 * GIB)
    assert summary.samples == 5 and summary.first == 100.0 and summary.last == 120.0
    assert summary.gaps == []
    assert summary.gpu_note == "no GPU: NVML library not found"


def test_gpu_metrics_only_from_samples_that_have_them() -> None:
    """A sample without a GPU reading contributes nothing to GPU metrics: no zeros."""
    samples = [
        sample(0.0, 10.0, gpu=(80.0, 10 * GIB)),
        sample(5.0, 10.0),
        sample(10.0, 10.0, gpu=(90.0, 12 * GIB)),
    ]
    summary = summarize([Window(0.0, 10.0, samples)], period_s=5.0)
    busy = summary.metrics["gpu0_busy_percent"]
    assert (busy.count, busy.min, busy.median, busy.max) == (2, 80.0, 85.0, 90.0)
    assert summary.metrics["gpu0_vram_used_bytes"].min == 10 * GIB
    assert summary.metrics["cpu_percent"].count == 3
    assert set(metric_values(samples[0])) == {
        "cpu_percent", "ram_used_bytes", "gpu0_busy_percent", "gpu0_vram_used_bytes",
    }


def test_gaps_at_start_between_samples_and_at_end() -> None:
    period = 5.0  # a gap is more than 15 s without a sample
    samples = [sample(t, 1.0) for t in (20.0, 25.0, 30.0, 60.0, 65.0)]
    summary = summarize([Window(0.0, 100.0, samples)], period_s=period)
    assert summary.gaps == [Gap(0.0, 20.0), Gap(30.0, 60.0), Gap(65.0, 100.0)]
    assert summary.metrics["cpu_percent"].count == 5  # the gaps add no samples


def test_spacing_of_exactly_three_periods_is_not_a_gap() -> None:
    samples = [sample(t, 1.0) for t in (15.0, 30.0)]
    assert summarize([Window(0.0, 45.0, samples)], period_s=5.0).gaps == []


def test_window_without_samples_is_one_gap_and_no_metrics() -> None:
    summary = summarize([Window(10.0, 100.0, [])], period_s=5.0)
    assert summary.samples == 0 and summary.first is None and summary.last is None
    assert summary.metrics == {}
    assert summary.gaps == [Gap(10.0, 100.0)]


def test_launches_pool_statistics_and_keep_their_own_gaps() -> None:
    """A resumed run: the time between launches is not a gap; each launch's start is checked."""
    first = Window(0.0, 10.0, [sample(1.0, 10.0), sample(6.0, 20.0)])
    second = Window(1000.0, 1040.0, [sample(1030.0, 30.0), sample(1035.0, 40.0)])
    summary = summarize([first, second], period_s=5.0)
    assert summary.gaps == [Gap(1000.0, 1030.0)]
    assert summary.metrics["cpu_percent"].median == 25.0
    assert summary.samples == 4 and summary.first == 1.0 and summary.last == 1035.0
    assert summary.span_s == 50.0  # 10 s + 40 s of launches, not the 1035 s from first to last sample
    assert summarize([], period_s=5.0).span_s is None


def test_two_gpus_are_summarised_separately() -> None:
    """A two-GPU host: each GPU keeps its own busy/VRAM statistics; neither is averaged into the other."""

    def two(t: float, busy: tuple[float, float], vram: tuple[int, int]) -> ResourceSample:
        gpus = [GpuSample(index=i, name="H200", busy_percent=busy[i], vram_used_bytes=vram[i],
                          vram_total_bytes=141 * GIB) for i in (0, 1)]
        return ResourceSample(time=t, cpu_percent=10.0, ram_used_bytes=GIB, ram_total_bytes=64 * GIB, gpus=gpus)

    samples = [two(10.0, (90.0, 10.0), (40 * GIB, 2 * GIB)), two(11.0, (80.0, 30.0), (41 * GIB, 3 * GIB)),
               two(12.0, (100.0, 20.0), (42 * GIB, 4 * GIB))]
    summary = summarize([Window(10.0, 12.0, samples)], period_s=1.0)
    assert {k for k in summary.metrics if k.startswith("gpu")} == {
        "gpu0_busy_percent", "gpu0_vram_used_bytes", "gpu1_busy_percent", "gpu1_vram_used_bytes"}
    g0, g1 = summary.metrics["gpu0_busy_percent"], summary.metrics["gpu1_busy_percent"]
    assert (g0.median, g0.min, g0.max) == (90.0, 80.0, 100.0)
    assert (g1.median, g1.min, g1.max) == (20.0, 10.0, 30.0)
    assert summary.metrics["gpu1_vram_used_bytes"].max == 4 * GIB


def test_a_run_on_two_gpus_has_its_memory_per_gpu() -> None:
    """Two ranks of one run (this process and its child), each on its own GPU, as NVML would list them."""
    import os
    import subprocess
    import sys

    from qwen_daemon.resources.process_usage import UsageMeter

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        pids = [os.getpid(), child.pid]
        nvml = {os.getpid(): {0: 40 * GIB}, child.pid: {1: 38 * GIB}, 999_999_999: {0: GIB}}  # the last: not ours
        usage = UsageMeter().measure({"run": pids}, nvml)["run"]
        assert usage.gpu_memory_bytes == 78 * GIB and usage.gpu_processes == 2
        assert usage.gpu_memory_per_gpu == {"0": 40 * GIB, "1": 38 * GIB}
        values = metric_values(ResourceSample(time=1.0, cpu_percent=1.0, ram_used_bytes=GIB, ram_total_bytes=GIB,
                                              runs={"run": usage}), "run")
        assert values["run_gpu0_memory_bytes"] == 40 * GIB and values["run_gpu1_memory_bytes"] == 38 * GIB
        assert UsageMeter().measure({"run": pids}, None)["run"].gpu_memory_per_gpu == {}  # no NVML: nothing per GPU
    finally:
        child.kill()
        child.wait()


def test_a_runs_ram_counts_pages_its_forked_workers_share_once() -> None:
    """A trainer-like parent touches 256 MiB, then forks three workers that keep it (as prefetch workers and the
    compiler's pool do): the RSS sum reads about four times the buffer, the PSS sum about the buffer once, which is
    what the host really gave the run. Both are recorded, each under its own name."""
    import subprocess
    import sys
    import time

    from qwen_daemon.protocol.display import metric_label
    from qwen_daemon.resources.process_usage import UsageMeter

    script = ("import os, sys, time\n"
              "buf = bytearray(256 * 2**20)\n"
              "for i in range(0, len(buf), 4096): buf[i] = 1\n"
              "kids = [os.fork() for _ in range(1)]\n"
              "kids += [os.fork() for _ in range(1)]\n"  # 1 + 1 + 2: four processes share the pages
              "os.write(1, f'{os.getpid()}\\n'.encode())\n"  # one write each: print's two interleave when unbuffered
              "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pids = sorted(int(parent.stdout.readline()) for _ in range(4))
        time.sleep(0.2)
        usage = UsageMeter().measure({"run": pids}, None)["run"]
        buffer = 256 * 2**20
        assert usage.processes == 4 and usage.rss_bytes > 3.5 * buffer
        assert usage.pss_bytes is not None and buffer < usage.pss_bytes < 1.4 * buffer
        assert (usage.ram_bytes, usage.ram_kind) == (usage.pss_bytes, "PSS")
        values = metric_values(ResourceSample(time=1.0, cpu_percent=1.0, ram_used_bytes=GIB, ram_total_bytes=GIB,
                                              runs={"run": usage}), "run")
        assert values["run_pss_bytes"] == usage.pss_bytes and values["run_rss_bytes"] == usage.rss_bytes
        assert metric_label("run_pss_bytes") == "run RAM (PSS)" and "summed" in metric_label("run_rss_bytes")
    finally:
        parent.kill()
        parent.wait()
        subprocess.run(["pkill", "-f", "bytearray\\(256"], check=False)
