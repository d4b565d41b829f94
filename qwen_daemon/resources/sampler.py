"""The resource sampler: host CPU/RAM, per-GPU busy/VRAM and each run's own share, every period.

Samples are the evidence behind a run's resource summary, so the sampler
must never be the thing that fails: the GPU reader (NVML, amdsmi, the
amdgpu sysfs files, or none: resources/gpu/) is chosen once at the start and
named in every sample; a machine without a GPU (NVML library not found, no
amdgpu card) is stated as such, a GPU no reader could read as an error, and
sampling goes on; an error in one tick is logged and the next tick tries
again. Its own liveness (the time of the last sample) is reported, and so
are its recent gaps (including the daemon's own downtime), so a dead sampler
shows up as gaps and as not alive, never as quiet zeros. Every sample also
goes to journald as structured fields, one entry per active run
(QWEN_RUN_ID) or one host entry when nothing runs, with the GPU reader in
QWEN_GPU_BACKEND. A sample the registry cannot store (a full state dir,
reported by state_writes.py) is still shown live; the stored series has a gap.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

import msgspec
import psutil

from qwen_daemon.protocol import Gap, GpuSample, ResourceSample, SamplerHealth
from qwen_daemon.resources.gpu.backend import GpuBackend, run_engine_percent
from qwen_daemon.resources.gpu.choose import choose_backend
from qwen_daemon.resources.gpu.nvml import NO_NVML_NOTE, NvmlBackend
from qwen_daemon.resources.process_usage import UsageMeter
from qwen_daemon.resources.summary import GAP_PERIODS
from qwen_daemon.state_writes import StateWriteError
from qwen_daemon.systemd.journal import JournalWriter

log = logging.getLogger(__name__)

__all__ = ["NO_NVML_NOTE", "GpuProbe", "Sampler", "SampleSink", "journal_fields", "take_sample"]

GpuProbe = NvmlBackend  # the NVML reader under the name the sampler's callers (bench/, tests) know it by
HOST_SAMPLE_RETENTION_S = 24 * 3600.0
_PRUNE_EVERY_S = 3600.0
RECENT_GAPS = 20


class SampleSink(Protocol):
    """Where samples go: the registry, or a list in a test."""

    def add_sample(self, sample: ResourceSample, runs: list[str]) -> None: ...

    def prune_host_samples(self, before: float) -> int: ...


def take_sample(
    probe: GpuBackend, now: float, run_pids: dict[str, list[int]] | None = None, meter: UsageMeter | None = None
) -> ResourceSample:
    """Host-wide readings plus each run's share. RAM 'used' is total minus available: what OOM means.

    A run's GPU memory is what the reader attributes to its host pids (a
    container's through cgroups, by its runner); its engine share, where the
    reader knows engine time (DRM fdinfo), is added to the same RunUsage.
    """
    memory = psutil.virtual_memory()
    gpus, note = probe.read()
    runs = {}
    if run_pids:
        held, shares = probe.process_usage()
        runs = (meter or UsageMeter()).measure(run_pids, held)
        for name, usage in runs.items():
            engine = run_engine_percent(run_pids.get(name, []), shares)
            if engine:
                runs[name] = msgspec.structs.replace(usage, gpu_engine_percent_per_gpu=engine)
    return ResourceSample(
        time=now,
        cpu_percent=float(psutil.cpu_percent(interval=None)),
        ram_used_bytes=int(memory.total - memory.available),
        ram_total_bytes=int(memory.total),
        gpus=gpus,
        gpu_note=note,
        runs=runs,
        gpu_backend=probe.name,
        gpu_present=probe.present,
    )


def journal_fields(sample: ResourceSample, run: str | None) -> dict[str, object]:
    """The sample as journald fields: QWEN_RUN_ID (when for a run), the GPU reader, one field per metric."""
    fields: dict[str, object] = {
        "QWEN_SAMPLE_TIME": f"{sample.time:.3f}",
        "QWEN_CPU_PERCENT": f"{sample.cpu_percent:.1f}",
        "QWEN_RAM_USED_BYTES": sample.ram_used_bytes,
        "QWEN_RAM_TOTAL_BYTES": sample.ram_total_bytes,
    }
    if sample.gpu_backend is not None:
        fields["QWEN_GPU_BACKEND"] = sample.gpu_backend
    for gpu in sample.gpus:
        fields |= _gpu_fields(gpu)
    if sample.gpu_note:
        fields["QWEN_GPU_NOTE"] = sample.gpu_note
    usage = sample.runs.get(run) if run is not None else None
    if run is not None:
        fields["QWEN_RUN_ID"] = run
    if usage is not None:
        fields["QWEN_RUN_PROCESSES"] = usage.processes
        fields["QWEN_RUN_CPU_PERCENT"] = f"{usage.cpu_percent:.1f}"
        fields["QWEN_RUN_RSS_BYTES"] = usage.rss_bytes
        if usage.pss_bytes is not None:
            fields["QWEN_RUN_PSS_BYTES"] = usage.pss_bytes
        if usage.gpu_memory_bytes is not None:
            fields["QWEN_RUN_GPU_MEMORY_BYTES"] = usage.gpu_memory_bytes
        for index, used in usage.gpu_memory_per_gpu.items():
            fields[f"QWEN_RUN_GPU{index}_MEMORY_BYTES"] = used
        for index, share in usage.gpu_engine_percent_per_gpu.items():
            fields[f"QWEN_RUN_GPU{index}_ENGINE_PERCENT"] = f"{share:.1f}"
    return fields


def _gpu_fields(gpu: GpuSample) -> dict[str, object]:
    """A GPU's readings as fields: only what was read in this sample; a sleeping GPU says so instead."""
    fields: dict[str, object] = {}
    if gpu.busy_percent is not None:
        fields[f"QWEN_GPU{gpu.index}_BUSY_PERCENT"] = f"{gpu.busy_percent:.1f}"
    if gpu.vram_read_now:
        fields[f"QWEN_GPU{gpu.index}_VRAM_USED_BYTES"] = gpu.vram_used_bytes
    if gpu.sleeping:
        fields[f"QWEN_GPU{gpu.index}_ASLEEP"] = 1
    return fields


class Sampler:
    """A daemon thread that samples every `period_s` and tags samples with the active runs."""

    def __init__(
        self,
        period_s: float,
        sink: SampleSink,
        active_runs: Callable[[], list[str]],
        probe: GpuBackend | None = None,
        run_pids: Callable[[str], list[int]] | None = None,
        journal: JournalWriter | None = None,
        last_before_start: float | None = None,
    ) -> None:
        self.period_s = period_s
        self._sink = sink
        self._active_runs = active_runs
        self._run_pids = run_pids
        self._journal = journal
        self._meter = UsageMeter()
        self._gaps: deque[Gap] = deque(maxlen=RECENT_GAPS)
        self._last_time = last_before_start
        self._probe = probe if probe is not None else choose_backend()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)
        self._lock = threading.Lock()
        self._latest: ResourceSample | None = None
        self._last_prune = 0.0
        self._started_at: float | None = None
        psutil.cpu_percent(interval=None)  # the first call only primes the counters

    @property
    def backend(self) -> GpuBackend:
        """The GPU reader chosen at the start, for whoever else must know who holds GPU memory (admission):
        one reader per daemon, so its processes() and the samples agree."""
        return self._probe

    @property
    def latest(self) -> ResourceSample | None:
        with self._lock:
            return self._latest

    def start(self) -> None:
        self._started_at = time.time()
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._probe.close()

    def sample_once(self) -> ResourceSample:
        """Take, store and remember one sample (the thread's tick; callable from tests)."""
        now = time.time()
        runs = self._active_runs()
        pids = {run: self._run_pids(run) for run in runs} if self._run_pids is not None else None
        sample = take_sample(self._probe, now, pids, self._meter)
        with contextlib.suppress(StateWriteError):  # reported by StateWrites: shown live, a gap in the stored series
            self._sink.add_sample(sample, runs)
        with self._lock:
            self._latest = sample
            if self._last_time is not None and now - self._last_time > GAP_PERIODS * self.period_s:
                self._gaps.append(Gap(start=self._last_time, end=now))
            self._last_time = now
        self._to_journal(sample, runs)
        if now - self._last_prune > _PRUNE_EVERY_S:
            self._last_prune = now
            with contextlib.suppress(StateWriteError):
                self._sink.prune_host_samples(now - HOST_SAMPLE_RETENTION_S)
        return sample

    def _to_journal(self, sample: ResourceSample, runs: list[str]) -> None:
        if self._journal is None:
            return
        host = f"cpu {sample.cpu_percent:.0f}% ram {sample.ram_used_bytes / 2**30:.1f} GiB"
        targets: list[str | None] = list(runs) if runs else [None]
        for run in targets:
            message = f"sample {run}: {host}" if run is not None else f"sample host: {host}"
            self._journal.send(message, journal_fields(sample, run))

    def _loop(self) -> None:
        """Tick on a fixed schedule; a failed tick is logged and leaves a gap, nothing else."""
        # The first CPU reading covers the time since the priming call: give it a moment,
        # or it measures a few milliseconds of noise.
        self._stop.wait(min(self.period_s, 0.25))
        due = time.monotonic()
        while not self._stop.is_set():
            try:
                self.sample_once()
            except Exception:
                log.exception("sampler tick failed; the next tick retries")
            due += self.period_s
            now = time.monotonic()
            if due < now:  # overslept (suspend, overload): skip the missed ticks
                due = now
            self._stop.wait(due - now)

    def health(self, now: float) -> SamplerHealth:
        """Alive while the thread runs and the last sample (or, before the first one,
        the start) is younger than 3 periods."""
        latest = self.latest
        last = latest.time if latest is not None else None
        since = last if last is not None else self._started_at
        alive = self._thread.is_alive() and since is not None and now - since < GAP_PERIODS * self.period_s
        with self._lock:
            gaps = list(self._gaps)
        if alive is False and since is not None and now - since > GAP_PERIODS * self.period_s:
            gaps.append(Gap(start=since, end=now))  # the gap still open right now
        journal = None
        if self._journal is not None:
            journal = self._journal.problem or f"sending to {self._journal.path} ({self._journal.sent} entries)"
        return SamplerHealth(
            period_s=self.period_s,
            last_sample=last,
            alive=alive,
            gpu_note=latest.gpu_note if latest is not None else self._probe.note,
            gaps=gaps,
            journal=journal,
            gpu_backend=self._probe.name,
        )
