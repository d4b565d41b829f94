"""NVIDIA GPUs through NVML (nvidia-ml-py): busy %, VRAM, and the processes holding VRAM.

NVML is initialised once, when the sampler starts; its absence (no library,
no driver, no device) is a note, never an exception, and the chooser then
tries the AMD readers. Per-process memory comes from NVML's compute and
graphics process lists, keyed by host pid, which is what cgroups map to
containers.
"""

from __future__ import annotations

import logging
from typing import Any

import pynvml

from qwen_daemon.protocol import GpuSample
from qwen_daemon.protocol.resources import GpuMetric
from qwen_daemon.resources.gpu.backend import BackendName, EngineShares, ProcessMemory, join_problems, merge_memory

log = logging.getLogger(__name__)

NO_NVML_NOTE = "no GPU: NVML library not found"


def _text(value: str | bytes) -> str:
    """Older nvidia-ml-py versions return bytes for names."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class NvmlBackend:
    """NVML, initialised once. Absence is a note, never an exception."""

    name: BackendName = "nvml"

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

    @property
    def present(self) -> bool:
        """NVML found devices (whether /dev/nvidia* exists without NVML is the chooser's question)."""
        return bool(self._handles)

    def read(self, wake: bool = False) -> tuple[list[GpuSample], str | None]:
        """One reading per GPU, utilisation and memory asked apart: a GPU that refuses one (utilisation is
        Not Supported under MIG) still has the other. NVML wakes nothing, so `wake` changes nothing."""
        gpus = [self._read_one(index, handle) for index, handle in enumerate(self._handles)]
        problems = [f"GPU {gpu.index} partly unread: " + "; ".join(f"{metric}: {why}" for metric, why in
                                                                   gpu.unread.items()) for gpu in gpus if gpu.unread]
        return gpus, join_problems(problems, self.note)

    def _read_one(self, index: int, handle: object) -> GpuSample:
        unread: dict[GpuMetric, str] = {}
        try:
            name = _text(pynvml.nvmlDeviceGetName(handle))
        except pynvml.NVMLError:
            name = f"NVIDIA GPU {index}"
        busy = used = total = None
        try:
            busy = float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except pynvml.NVMLError as exc:
            unread["busy_percent"] = str(exc)
        try:
            memory = self._memory(handle)
            used, total = int(memory.used), int(memory.total)
        except pynvml.NVMLError as exc:
            unread |= {"vram_used_bytes": str(exc), "vram_total_bytes": str(exc)}
        return GpuSample(index=index, name=name, busy_percent=busy, vram_used_bytes=used, vram_total_bytes=total,
                         unread=unread)

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

    def processes(self) -> ProcessMemory | None:
        """Host pid -> {GPU index: memory bytes} (compute and graphics); None without NVML."""
        if not self._open:
            return None
        used: ProcessMemory = {}
        for index, handle in enumerate(self._handles):
            for query in (pynvml.nvmlDeviceGetComputeRunningProcesses, pynvml.nvmlDeviceGetGraphicsRunningProcesses):
                try:
                    procs = query(handle)
                except pynvml.NVMLError:
                    continue
                for proc in procs:
                    memory = proc.usedGpuMemory if isinstance(proc.usedGpuMemory, int) else 0
                    merge_memory(used, int(proc.pid), index, memory)
        return used

    def process_usage(self) -> tuple[ProcessMemory | None, EngineShares]:
        """Memory only: NVML's per-process utilisation is its own sampled buffer, not engine time."""
        return self.processes(), {}

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                pynvml.nvmlShutdown()
            except pynvml.NVMLError as exc:
                log.warning("NVML shutdown failed: %s", exc)
