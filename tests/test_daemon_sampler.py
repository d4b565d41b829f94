"""The sampler on this machine (no GPU): NVML's absence is stated, CPU/RAM are still sampled.

The `gpu` tests run on the accelerator machine, where NVML is the reader chosen. The AMD readers are
tested over recorded trees in test_daemon_gpu_amd.py and test_daemon_gpu_choice.py.
"""

from __future__ import annotations

import subprocess
import time

import pynvml
import pytest

from qwen_daemon.protocol import ResourceSample
from qwen_daemon.resources.sampler import NO_NVML_NOTE, GpuProbe, Sampler


def _nvml_present() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


needs_no_gpu = pytest.mark.skipif(_nvml_present(), reason="this machine has NVML: the no-GPU path is not reachable")


class ListSink:
    def __init__(self) -> None:
        self.rows: list[tuple[ResourceSample, list[str]]] = []
        self.pruned: list[float] = []

    def add_sample(self, sample: ResourceSample, runs: list[str]) -> None:
        self.rows.append((sample, runs))

    def prune_host_samples(self, before: float) -> int:
        self.pruned.append(before)
        return 0


@needs_no_gpu
def test_probe_without_gpu_states_it_and_does_not_raise() -> None:
    probe = GpuProbe()
    assert probe.note == NO_NVML_NOTE == "no GPU: NVML library not found"
    assert probe.read() == ([], NO_NVML_NOTE)
    assert probe.name == "nvml" and not probe.present and probe.processes() is None
    probe.close()


@needs_no_gpu
def test_sample_has_cpu_and_ram_and_the_gpu_note() -> None:
    sink = ListSink()
    sampler = Sampler(0.1, sink, lambda: ["r1", "r2"])
    sample = sampler.sample_once()
    assert 0.0 <= sample.cpu_percent <= 100.0
    assert 0 < sample.ram_used_bytes < sample.ram_total_bytes
    assert sample.gpus == [] and sample.gpu_note == NO_NVML_NOTE
    # no NVML, no amdsmi, no amdgpu card, no GPU device node here: "none", and truly no GPU
    assert (sample.gpu_backend, sample.gpu_present) == ("none", False)
    assert sampler.health(sample.time).gpu_backend == "none"
    assert sink.rows == [(sample, ["r1", "r2"])]
    assert sampler.latest == sample
    assert len(sink.pruned) == 1  # host-only samples are pruned on the first tick, then hourly
    sampler.stop()


def test_thread_samples_every_period_and_reports_liveness() -> None:
    sink = ListSink()
    sampler = Sampler(0.05, sink, list)
    assert not sampler.health(time.time()).alive  # nothing sampled yet
    sampler.start()
    try:
        deadline = time.monotonic() + 5
        while len(sink.rows) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(sink.rows) >= 4
        health = sampler.health(time.time())
        assert health.alive and health.period_s == 0.05 and health.last_sample is not None
        assert all(runs == [] for _, runs in sink.rows)
    finally:
        sampler.stop()
    time.sleep(0.2)
    assert not sampler.health(time.time()).alive  # stopped sampler: not alive, and says so


def test_a_failing_tick_leaves_a_gap_not_a_dead_sampler() -> None:
    class FlakySink(ListSink):
        calls = 0

        def add_sample(self, sample: ResourceSample, runs: list[str]) -> None:
            self.calls += 1
            if self.calls == 1:
                raise OSError("disk full")
            super().add_sample(sample, runs)

    sink = FlakySink()
    sampler = Sampler(0.05, sink, list)
    sampler.start()
    try:
        deadline = time.monotonic() + 5
        while len(sink.rows) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(sink.rows) >= 2 and sampler.health(time.time()).alive
    finally:
        sampler.stop()


@pytest.mark.gpu
def test_probe_with_gpus_reads_busy_and_vram_per_gpu() -> None:
    probe = GpuProbe()
    try:
        gpus, note = probe.read()
        assert note is None and gpus, note
        assert [g.index for g in gpus] == list(range(len(gpus)))
        for gpu in gpus:
            assert gpu.name and 0.0 <= gpu.busy_percent <= 100.0
            assert 0 <= gpu.vram_used_bytes <= gpu.vram_total_bytes and gpu.vram_total_bytes > 2**30
        sample = Sampler(0.1, ListSink(), list, probe=probe).sample_once()
        assert len(sample.gpus) == len(gpus) and sample.gpu_note is None
        assert (sample.gpu_backend, sample.gpu_present) == ("nvml", True)
        chosen = Sampler(0.1, ListSink(), list)  # NVML initialises and finds devices: it is the reader chosen
        assert chosen.sample_once().gpu_backend == "nvml"
        chosen.stop()
    finally:
        probe.close()


@pytest.mark.gpu
def test_vram_used_agrees_with_nvidia_smi_on_every_gpu() -> None:
    """The probe counts VRAM as nvidia-smi does (memory info v2: the driver's reservation is not 'used')."""
    smi = subprocess.run(["nvidia-smi", "--query-gpu=index,memory.used", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    expected = {int(i): float(used) for i, used in (line.split(",") for line in smi.strip().splitlines())}
    probe = GpuProbe()
    try:
        gpus, note = probe.read()
    finally:
        probe.close()
    assert note is None and sorted(g.index for g in gpus) == sorted(expected)
    for gpu in gpus:  # an idle GPU's memory does not move between the two readings; smi rounds to MiB
        assert abs(gpu.vram_used_bytes / 2**20 - expected[gpu.index]) <= 2.0, (gpu, expected)
