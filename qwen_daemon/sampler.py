"""The resource sampler: host CPU/RAM and per-GPU busy/VRAM, every period.

Samples are the evidence behind a run's resource summary, so the sampler
must never be the thing that fails: a machine without a GPU (NVML library
not found) is stated as such and sampling goes on; an error in one tick is
logged and the next tick tries again. Its own liveness (the time of the last
sample) is reported, so a dead sampler shows up as gaps and as not alive,
never as quiet zeros.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

import psutil
import pynvml

from qwen_daemon.protocol import SamplerHealth
from qwen_daemon.resources import GpuSample, ResourceSample
from qwen_daemon.summary import GAP_PERIODS

log = logging.getLogger(__name__)

NO_NVML_NOTE = "no GPU: NVML library not found"
HOST_SAMPLE_RETENTION_S = 24 * 3600.0
_PRUNE_EVERY_S = 3600.0


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
                memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
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

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                pynvml.nvmlShutdown()
            except pynvml.NVMLError as exc:
                log.warning("NVML shutdown failed: %s", exc)


def take_sample(probe: GpuProbe, now: float) -> ResourceSample:
    """Host-wide readings. RAM 'used' is total minus available: what pressure means for OOM."""
    memory = psutil.virtual_memory()
    gpus, note = probe.read()
    return ResourceSample(
        time=now,
        cpu_percent=float(psutil.cpu_percent(interval=None)),
        ram_used_bytes=int(memory.total - memory.available),
        ram_total_bytes=int(memory.total),
        gpus=gpus,
        gpu_note=note,
    )


class Sampler:
    """A daemon thread that samples every `period_s` and tags samples with the active runs."""

    def __init__(
        self,
        period_s: float,
        sink: SampleSink,
        active_runs: Callable[[], list[str]],
        probe: GpuProbe | None = None,
    ) -> None:
        self.period_s = period_s
        self._sink = sink
        self._active_runs = active_runs
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
        sample = take_sample(self._probe, now)
        self._sink.add_sample(sample, self._active_runs())
        with self._lock:
            self._latest = sample
        if now - self._last_prune > _PRUNE_EVERY_S:
            self._last_prune = now
            self._sink.prune_host_samples(now - HOST_SAMPLE_RETENTION_S)
        return sample

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
        return SamplerHealth(
            period_s=self.period_s,
            last_sample=last,
            alive=alive,
            gpu_note=latest.gpu_note if latest is not None else self._probe.note,
        )
