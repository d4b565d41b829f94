"""The resource sampler: host CPU/RAM, per-GPU busy/VRAM and each run's own share, every period.

Samples are the evidence behind a run's resource summary, so the sampler
must never be the thing that fails: a machine without a GPU (NVML library
not found) is stated as such and sampling goes on; an error in one tick is
logged and the next tick tries again. Its own liveness (the time of the last
sample) is reported, and so are its recent gaps (including the daemon's own
downtime), so a dead sampler shows up as gaps and as not alive, never as
quiet zeros. Every sample also goes to journald as structured fields, one
entry per active run (QWEN_RUN_ID) or one host entry when nothing runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import psutil
import pynvml

from qwen_daemon.protocol import Gap, GpuSample, ResourceSample, SamplerHealth
from qwen_daemon.resources.process_usage import UsageMeter
from qwen_daemon.resources.summary import GAP_PERIODS
from qwen_daemon.systemd.journal import JournalWriter

log = logging.getLogger(__name__)

NO_NVML_NOTE = "no GPU: NVML library not found"
HOST_SAMPLE_RETENTION_S = 24 * 3600.0
_PRUNE_EVERY_S = 3600.0
RECENT_GAPS = 20


class SampleSink(Protocol):
    """Where samples go: the registry, or a list in a test."""

    def add_sample(self, sample: ResourceSample, runs: list[str]) -> None: ...

    def prune_host_samples(self, before: float) -> int: ...


def _text(value: str | bytes) -> str:
    """Older nvidia-ml-py versions return bytes for names."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class GpuProbe:
    """NVML, initialised once. Absence is a note, never an exception."""

    def __init__(self) -> None:
        self._handles: list[object] = []
        self._open = False
        self._memory_v2 = True
        self.note: str | None = None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError_LibraryNotFound:
            self.note = NO_NVML_NOTE
            return
        except Exception as exc:  # NVMLError or a broken driver install: absent, not fatal
            self.note = f"no GPU: {exc}"
            return
        self._open = True
        try:
            count = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except pynvml.NVMLError as exc:
            self.note = f"no GPU: {exc}"
            return
        if not self._handles:
            self.note = "no GPU: NVML found no devices"

    def read(self) -> tuple[list[GpuSample], str | None]:
        """One reading per GPU; a GPU that fails to answer is named in the note and skipped."""
        gpus: list[GpuSample] = []
        problems: list[str] = []
        for index, handle in enumerate(self._handles):
            try:
                util = pynvml.nvmlDeviceGetUtilizationRates(handle)
                memory = self._memory(handle)
                name = _text(pynvml.nvmlDeviceGetName(handle))
            except pynvml.NVMLError as exc:
                problems.append(f"GPU {index}: {exc}")
                continue
            gpus.append(
                GpuSample(
                    index=index,
                    name=name,
                    busy_percent=float(util.gpu),
                    vram_used_bytes=int(memory.used),
                    vram_total_bytes=int(memory.total),
                )
            )
        return gpus, "; ".join(problems) if problems else self.note

    def _memory(self, handle: object) -> Any:
        """Memory info as nvidia-smi counts it: v2, whose `used` leaves out the driver's reserved memory.

        v1's `used` includes that reservation (measured on an H100: a constant
        480 MiB above nvidia-smi). Drivers or bindings without v2 fall back to
        v1, once, and the note says so.
        """
        if self._memory_v2:
            try:
                return pynvml.nvmlDeviceGetMemoryInfo(handle, version=pynvml.nvmlMemory_v2)
            except (pynvml.NVMLError_FunctionNotFound, pynvml.NVMLError_NotSupported,
                    pynvml.NVMLError_ArgumentVersionMismatch, AttributeError, TypeError):
                self._memory_v2 = False
                log.warning("NVML memory info v2 unavailable: VRAM used includes the driver's reserved memory")
        return pynvml.nvmlDeviceGetMemoryInfo(handle)

    def processes(self) -> dict[int, dict[int, int]] | None:
        """Host pid -> {GPU index: memory bytes} (compute and graphics); None without NVML."""
        if not self._open:
            return None
        used: dict[int, dict[int, int]] = {}
        for index, handle in enumerate(self._handles):
            for query in (pynvml.nvmlDeviceGetComputeRunningProcesses, pynvml.nvmlDeviceGetGraphicsRunningProcesses):
                try:
                    procs = query(handle)
                except pynvml.NVMLError:
                    continue
                for proc in procs:
                    memory = proc.usedGpuMemory if isinstance(proc.usedGpuMemory, int) else 0
                    per_gpu = used.setdefault(int(proc.pid), {})
                    per_gpu[index] = per_gpu.get(index, 0) + memory
        return used

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                pynvml.nvmlShutdown()
            except pynvml.NVMLError as exc:
                log.warning("NVML shutdown failed: %s", exc)


def take_sample(
    probe: GpuProbe, now: float, run_pids: dict[str, list[int]] | None = None, meter: UsageMeter | None = None
) -> ResourceSample:
    """Host-wide readings plus each run's share. RAM 'used' is total minus available: what OOM means."""
    memory = psutil.virtual_memory()
    gpus, note = probe.read()
    runs = (meter or UsageMeter()).measure(run_pids, probe.processes()) if run_pids else {}
    return ResourceSample(
        time=now,
        cpu_percent=float(psutil.cpu_percent(interval=None)),
        ram_used_bytes=int(memory.total - memory.available),
        ram_total_bytes=int(memory.total),
        gpus=gpus,
        gpu_note=note,
        runs=runs,
    )


def journal_fields(sample: ResourceSample, run: str | None) -> dict[str, object]:
    """The sample as journald fields: QWEN_RUN_ID (when for a run) and one field per metric."""
    fields: dict[str, object] = {
        "QWEN_SAMPLE_TIME": f"{sample.time:.3f}",
        "QWEN_CPU_PERCENT": f"{sample.cpu_percent:.1f}",
        "QWEN_RAM_USED_BYTES": sample.ram_used_bytes,
        "QWEN_RAM_TOTAL_BYTES": sample.ram_total_bytes,
    }
    for gpu in sample.gpus:
        fields[f"QWEN_GPU{gpu.index}_BUSY_PERCENT"] = f"{gpu.busy_percent:.1f}"
        fields[f"QWEN_GPU{gpu.index}_VRAM_USED_BYTES"] = gpu.vram_used_bytes
    if sample.gpu_note:
        fields["QWEN_GPU_NOTE"] = sample.gpu_note
    usage = sample.runs.get(run) if run is not None else None
    if run is not None:
        fields["QWEN_RUN_ID"] = run
    if usage is not None:
        fields["QWEN_RUN_PROCESSES"] = usage.processes
        fields["QWEN_RUN_CPU_PERCENT"] = f"{usage.cpu_percent:.1f}"
        fields["QWEN_RUN_RSS_BYTES"] = usage.rss_bytes
        if usage.gpu_memory_bytes is not None:
            fields["QWEN_RUN_GPU_MEMORY_BYTES"] = usage.gpu_memory_bytes
        for index, used in usage.gpu_memory_per_gpu.items():
            fields[f"QWEN_RUN_GPU{index}_MEMORY_BYTES"] = used
    return fields


class Sampler:
    """A daemon thread that samples every `period_s` and tags samples with the active runs."""

    def __init__(
        self,
        period_s: float,
        sink: SampleSink,
        active_runs: Callable[[], list[str]],
        probe: GpuProbe | None = None,
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
        self._probe = probe if probe is not None else GpuProbe()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)
        self._lock = threading.Lock()
        self._latest: ResourceSample | None = None
        self._last_prune = 0.0
        self._started_at: float | None = None
        psutil.cpu_percent(interval=None)  # the first call only primes the counters

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
        self._sink.add_sample(sample, runs)
        with self._lock:
            self._latest = sample
            if self._last_time is not None and now - self._last_time > GAP_PERIODS * self.period_s:
                self._gaps.append(Gap(start=self._last_time, end=now))
            self._last_time = now
        self._to_journal(sample, runs)
        if now - self._last_prune > _PRUNE_EVERY_S:
            self._last_prune = now
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
        )
