"""AMD GPUs through amdsmi, ROCm's AMD SMI Python package, where it imports.

amdsmi ships with ROCm and is not installable where this project is built
and tested, so this reader is written against amdsmi's documented Python API
(ROCm/amdsmi, py-interface/amdsmi_interface.py) and tested only through a fake
module put in sys.modules["amdsmi"]; it has not run against the real library.
What it uses:

  amdsmi_init(AmdSmiInitFlags.INIT_AMD_GPUS), amdsmi_shut_down()
  amdsmi_get_processor_handles()                       -> [handle, ...]
  amdsmi_get_gpu_asic_info(h)                          -> {"market_name", "target_graphics_version": "gfx1201", ...}
  amdsmi_get_gpu_device_bdf(h)                         -> "0000:03:00.0"
  amdsmi_get_gpu_activity(h)                           -> {"gfx_activity": percent or "N/A", ...}
  amdsmi_get_gpu_memory_usage(h, AmdSmiMemoryType.VRAM), amdsmi_get_gpu_memory_total(h, ...) -> bytes
  amdsmi_get_gpu_process_list(h)                       -> [{"pid", "mem", "engine_usage": {"gfx", "enc"} (ns),
                                                            "memory_usage": {"vram_mem", ...}}, ...]
  (older releases list process handles instead: amdsmi_get_gpu_process_info(h, p) gives the dict)

Failures raise amdsmi's AmdSmiException (or anything else from a broken
install): each is a note for that GPU and tick, never an exception out of
the reader. Where the process list is refused (it can need privileges), the
GPU's holders come from DRM fdinfo instead, matched by the GPU's PCI address.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from qwen_daemon.protocol import GpuSample
from qwen_daemon.resources.gpu.backend import (
    BackendName,
    EngineShares,
    ProcessMemory,
    join_problems,
    merge_memory,
    only_ints,
)
from qwen_daemon.resources.gpu.engines import EngineReading, EngineTracker
from qwen_daemon.resources.gpu.fdinfo import FdinfoReader

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Gpu:
    index: int
    handle: object
    name: str
    arch: str | None
    slot: str | None


class AmdSmiBackend:
    """amdsmi, initialised once; `present` is whether it found any GPU."""

    name: BackendName = "amdsmi"

    def __init__(self, smi: ModuleType, root: Path = Path("/"), tracker: EngineTracker | None = None) -> None:
        self._smi = smi
        self._gpus: list[_Gpu] = []
        self._open = False
        self._tracker = tracker or EngineTracker()
        self.note: str | None = None
        try:
            smi.amdsmi_init(smi.AmdSmiInitFlags.INIT_AMD_GPUS)
        except Exception as exc:  # AmdSmiLibraryException, or a broken install: not ours to crash on
            self.note = f"amdsmi: init failed: {exc}"
            self._fdinfo = FdinfoReader(root, {})
            return
        self._open = True
        try:
            handles = list(smi.amdsmi_get_processor_handles())
        except Exception as exc:
            handles = []
            self.note = f"amdsmi: cannot list GPUs: {exc}"
        self._gpus = [self._describe(index, handle) for index, handle in enumerate(handles)]
        if not self._gpus and self.note is None:
            self.note = "amdsmi found no GPUs"
        self._fdinfo = FdinfoReader(root, {gpu.slot: gpu.index for gpu in self._gpus if gpu.slot})

    def _describe(self, index: int, handle: object) -> _Gpu:
        """Name, ISA and PCI address, asked once: they do not change while the sampler runs."""
        name, arch, slot = f"AMD GPU {index}", None, None
        try:
            asic = self._smi.amdsmi_get_gpu_asic_info(handle)
            market = str(asic.get("market_name", "")).strip()
            name = market if market and market != "N/A" else name
            target = str(asic.get("target_graphics_version", "")).strip()
            arch = target if target.startswith("gfx") and target != "gfx" else None
        except Exception as exc:
            log.warning("amdsmi: no ASIC info for GPU %d: %s", index, exc)
        try:
            slot = str(self._smi.amdsmi_get_gpu_device_bdf(handle)).strip().lower() or None
        except Exception as exc:
            log.warning("amdsmi: no PCI address for GPU %d (its holders cannot come from fdinfo): %s", index, exc)
        return _Gpu(index, handle, name, arch, slot)

    @property
    def present(self) -> bool:
        return bool(self._gpus)

    def read(self) -> tuple[list[GpuSample], str | None]:
        smi = self._smi
        gpus: list[GpuSample] = []
        problems: list[str] = []
        for gpu in self._gpus:
            try:
                busy = smi.amdsmi_get_gpu_activity(gpu.handle).get("gfx_activity")
                used = smi.amdsmi_get_gpu_memory_usage(gpu.handle, smi.AmdSmiMemoryType.VRAM)
                total = smi.amdsmi_get_gpu_memory_total(gpu.handle, smi.AmdSmiMemoryType.VRAM)
            except Exception as exc:
                problems.append(f"GPU {gpu.index}: {exc}")
                continue
            if not isinstance(busy, int | float) or not isinstance(used, int) or not isinstance(total, int):
                problems.append(f"GPU {gpu.index}: amdsmi gave no reading (activity {busy!r}, VRAM {used!r}/{total!r})")
                continue
            gpus.append(GpuSample(index=gpu.index, name=gpu.name, busy_percent=float(busy), vram_used_bytes=used,
                                  vram_total_bytes=total, arch=gpu.arch))
        return gpus, join_problems(problems, self.note)

    def processes(self) -> ProcessMemory | None:
        return self.process_usage()[0]

    def process_usage(self) -> tuple[ProcessMemory | None, EngineShares]:
        """amdsmi's process list per GPU; GPUs whose list is refused get their holders from fdinfo."""
        if not self._open:
            return None, {}
        memory: ProcessMemory = {}
        readings: list[EngineReading] = []
        refused: set[int] = set()
        for gpu in self._gpus:
            try:
                entries = [self._entry(gpu, item) for item in self._smi.amdsmi_get_gpu_process_list(gpu.handle)]
            except Exception as exc:
                log.debug("amdsmi: process list of GPU %d refused: %s", gpu.index, exc)
                refused.add(gpu.index)
                continue
            for entry in entries:
                pid = entry.get("pid")
                if not isinstance(pid, int):
                    continue
                usage = entry.get("memory_usage")
                vram = usage.get("vram_mem") if isinstance(usage, dict) else entry.get("mem")
                if isinstance(vram, int) and vram > 0:
                    merge_memory(memory, pid, gpu.index, vram)
                engines = entry.get("engine_usage")
                if isinstance(engines, dict) and only_ints(engines):
                    readings.append(EngineReading((gpu.index, pid), pid, gpu.index, only_ints(engines)))
        shares = self._tracker.update(readings)
        if refused:
            self._from_fdinfo(refused, memory, shares)
        return memory, shares

    def _entry(self, gpu: _Gpu, item: object) -> dict[str, object]:
        if isinstance(item, dict):
            return item
        info = self._smi.amdsmi_get_gpu_process_info(gpu.handle, item)  # releases that list handles
        return info if isinstance(info, dict) else {}

    def _from_fdinfo(self, refused: set[int], memory: ProcessMemory, shares: EngineShares) -> None:
        fd_memory, fd_shares = self._fdinfo.scan()
        for pid, per_gpu in fd_memory.items():
            for index, used in per_gpu.items():
                if index in refused:
                    merge_memory(memory, pid, index, used)
        for pid, gpus in fd_shares.items():
            for index, engines in gpus.items():
                if index in refused:
                    shares.setdefault(pid, {})[index] = engines

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                self._smi.amdsmi_shut_down()
            except Exception as exc:
                log.warning("amdsmi shutdown failed: %s", exc)
