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
                                                            "memory_usage": {"vram_mem", "gtt_mem", ...}}, ...]
  (older releases list process handles instead: amdsmi_get_gpu_process_info(h, p) gives the dict)

Each metric is asked on its own, and what amdsmi cannot give ("N/A", its
not-supported marks, an exception) is that metric unread, with its reason
(amdsmi_values.py). The arch comes from the KFD topology by the GPU's PCI
address; the sleeping test reads the same address's `power/runtime_status`
in sysfs, since amdsmi's metric calls read files that wake a suspended GPU.
Where the process list is refused (it can need privileges), or the GPU
sleeps, the GPU's holders come from DRM fdinfo instead, matched by address.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from qwen_daemon.protocol import GpuSample
from qwen_daemon.resources.gpu.amdsmi_values import ask, choose_arch, percent, size
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
from qwen_daemon.resources.gpu.kfd import KfdNode, is_apu, node_for
from qwen_daemon.resources.gpu.readings import CardState, runtime_suspended, unread_note

log = logging.getLogger(__name__)


@dataclass
class _Gpu:
    handle: object
    state: CardState
    reported: str = ""  # amdsmi's own arch string
    slot: str | None = None
    node: KfdNode | None = None
    remark: str | None = None  # a standing word for the note (amdsmi's arch string, where it is not shown)
    apu_known: bool = False


class AmdSmiBackend:
    """amdsmi, initialised once; `present` is whether it found any GPU."""

    name: BackendName = "amdsmi"

    def __init__(self, smi: ModuleType, root: Path = Path("/"), tracker: EngineTracker | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._smi = smi
        self._root = root
        self._clock = clock
        self._gpus: list[_Gpu] = []
        self._slots: dict[str, int] = {}  # PCI address -> GPU index, for fdinfo; grows as addresses are learnt
        self._open = False
        self._tracker = tracker or EngineTracker()
        self.note: str | None = None
        try:
            smi.amdsmi_init(smi.AmdSmiInitFlags.INIT_AMD_GPUS)
        except Exception as exc:  # AmdSmiLibraryException, or a broken install: not ours to crash on
            self.note = f"amdsmi: init failed: {exc}"
            self._fdinfo = FdinfoReader(root, self._slots)
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
        self._fdinfo = FdinfoReader(root, self._slots, gtt_gpus=self._apus)

    def _describe(self, index: int, handle: object) -> _Gpu:
        """Name and reported arch, asked once; the PCI address and KFD node are looked for at ticks while missing."""
        asic, why = ask(lambda: self._smi.amdsmi_get_gpu_asic_info(handle), "ASIC info")
        if why:
            log.warning("amdsmi: GPU %d: %s", index, why)
        facts = asic if isinstance(asic, dict) else {}
        market = str(facts.get("market_name", "")).strip()
        reported = str(facts.get("target_graphics_version", "")).strip()
        gpu = _Gpu(handle, CardState(index, market if market and market != "N/A" else f"AMD GPU {index}", ""),
                   reported=reported if reported != "N/A" else "")
        self._locate(gpu)
        return gpu

    def _locate(self, gpu: _Gpu) -> None:
        """The GPU's PCI address, its KFD node, and the arch they give (choose_arch)."""
        if gpu.slot is None:
            bdf, why = ask(lambda: self._smi.amdsmi_get_gpu_device_bdf(gpu.handle), "the PCI address")
            if why is None and str(bdf).strip():
                gpu.slot = str(bdf).strip().lower()
                self._slots[gpu.slot] = gpu.state.index
            gpu.state.label = f"amdsmi {gpu.slot or 'at an unknown PCI address'}"
        if gpu.node is None:
            gpu.node = node_for(self._root, gpu.slot)
            gpu.state.arch, gpu.remark = choose_arch(gpu.state.index, gpu.node, gpu.reported)

    @property
    def present(self) -> bool:
        return bool(self._gpus)

    def _apus(self) -> list[int]:
        return [gpu.state.index for gpu in self._gpus if gpu.state.apu]

    def _asleep(self, gpu: _Gpu) -> bool:
        return gpu.slot is not None and runtime_suspended(self._root / "sys/bus/pci/devices" / gpu.slot)

    def read(self, wake: bool = False) -> tuple[list[GpuSample], str | None]:
        gpus: list[GpuSample] = []
        notes: list[str] = []
        for gpu in self._gpus:
            self._locate(gpu)
            sample = gpu.state.asleep() if not wake and self._asleep(gpu) else self._read_awake(gpu)
            gpus.append(sample)
            notes += [note for note in (unread_note(sample, gpu.state.label), gpu.remark) if note]
        return gpus, join_problems(notes, self.note)

    def _read_awake(self, gpu: _Gpu) -> GpuSample:
        smi, handle = self._smi, gpu.handle
        activity, why = ask(lambda: smi.amdsmi_get_gpu_activity(handle), "its activity")
        busy = (percent(activity.get("gfx_activity"), "gfx_activity") if isinstance(activity, dict)
                else (None, why or f"amdsmi gives its activity as {activity!r}"))
        vram = smi.AmdSmiMemoryType.VRAM
        used = self._size(lambda: smi.amdsmi_get_gpu_memory_usage(handle, vram), "VRAM used")
        total = self._size(lambda: smi.amdsmi_get_gpu_memory_total(handle, vram), "VRAM total")
        if not gpu.apu_known and gpu.node is not None and total[0] is not None:
            gpu.state.apu, gpu.apu_known = is_apu(gpu.node, total[0]), True
        return gpu.state.awake(busy, used, total, self._clock())

    @staticmethod
    def _size(call: Callable[[], object], what: str) -> tuple[int | None, str | None]:
        value, why = ask(call, what)
        return (None, why) if why else size(value, what)

    def processes(self) -> ProcessMemory | None:
        return self.process_usage()[0]

    def process_usage(self) -> tuple[ProcessMemory | None, EngineShares]:
        """amdsmi's process list per GPU; GPUs whose list is refused, or that sleep, get theirs from fdinfo."""
        if not self._open:
            return None, {}
        memory: ProcessMemory = {}
        readings: list[EngineReading] = []
        elsewhere: set[int] = set()
        for gpu in self._gpus:
            entries = None if self._asleep(gpu) else self._entries(gpu)
            if entries is None:
                elsewhere.add(gpu.state.index)
                continue
            for entry in entries:
                self._count(gpu, entry, memory, readings)
        shares = self._tracker.update(readings)
        if elsewhere:
            self._from_fdinfo(elsewhere, memory, shares)
        return memory, shares

    def _entries(self, gpu: _Gpu) -> list[dict[str, object]] | None:
        try:
            return [self._entry(gpu, item) for item in self._smi.amdsmi_get_gpu_process_list(gpu.handle)]
        except Exception as exc:
            log.debug("amdsmi: process list of GPU %d refused: %s", gpu.state.index, exc)
            return None

    @staticmethod
    def _count(gpu: _Gpu, entry: dict[str, object], memory: ProcessMemory, readings: list[EngineReading]) -> None:
        """One process of the list: its VRAM (and GTT, on an APU), and its engine time."""
        pid, index = entry.get("pid"), gpu.state.index
        if not isinstance(pid, int):
            return
        usage, mem = entry.get("memory_usage"), entry.get("mem")
        regions = only_ints(usage) if isinstance(usage, dict) else {"vram_mem": mem} if isinstance(mem, int) else {}
        held = regions.get("vram_mem", 0) + (regions.get("gtt_mem", 0) if gpu.state.apu else 0)
        if held > 0:
            merge_memory(memory, pid, index, held)
        engines = entry.get("engine_usage")
        if isinstance(engines, dict) and only_ints(engines):
            readings.append(EngineReading((index, pid), pid, index, only_ints(engines)))

    def _entry(self, gpu: _Gpu, item: object) -> dict[str, object]:
        if isinstance(item, dict):
            return item
        info = self._smi.amdsmi_get_gpu_process_info(gpu.handle, item)  # releases that list handles
        return info if isinstance(info, dict) else {}

    def _from_fdinfo(self, indices: set[int], memory: ProcessMemory, shares: EngineShares) -> None:
        fd_memory, fd_shares = self._fdinfo.scan()
        for pid, per_gpu in fd_memory.items():
            for index, used in per_gpu.items():
                if index in indices:
                    merge_memory(memory, pid, index, used)
        for pid, gpus in fd_shares.items():
            for index, engines in gpus.items():
                if index in indices:
                    shares.setdefault(pid, {})[index] = engines

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                self._smi.amdsmi_shut_down()
            except Exception as exc:
                log.warning("amdsmi shutdown failed: %s", exc)
