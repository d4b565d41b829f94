"""Which GPU reader the sampler uses, decided once at its start.

In order: NVML where it initialises and finds devices; amdsmi where it
imports and finds GPUs; the amdgpu sysfs files where an amdgpu card is bound
(read or not: its counters are tried at every tick, and a card that reads
nothing is an error note in each sample); else no reader. "No reader" is
only "no GPU" when the host shows no GPU device at all: /dev/kfd or an
NVIDIA device node (/dev/nvidia0, /proc/driver/nvidia/gpus) with nothing
able to read it is an error note beginning "GPU present but unread", which
the promotion gate refuses, so a host whose GPU went unsampled never reads
as a host without one.

The first reader that reads wins; a second vendor's GPU on the same host (an
AMD iGPU beside an NVIDIA card) is logged, not sampled: a run trains on one
vendor's devices, and that is the evidence the sampler keeps.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from pathlib import Path
from types import ModuleType

from qwen_daemon.protocol.resources import PRESENT_BUT_UNREAD
from qwen_daemon.resources.gpu.amdsmi_backend import AmdSmiBackend
from qwen_daemon.resources.gpu.backend import GpuBackend, NoGpu
from qwen_daemon.resources.gpu.cards import find_cards
from qwen_daemon.resources.gpu.nvml import NvmlBackend
from qwen_daemon.resources.gpu.sysfs import SysfsBackend

log = logging.getLogger(__name__)

_NVIDIA_NODE = re.compile(r"^nvidia\d+$")
NO_DEVICE_NOTE = "no GPU: no NVIDIA device and no amdgpu card"


def import_amdsmi() -> tuple[ModuleType | None, str]:
    """The amdsmi module, or None and why not (not installed, or its library failed to load)."""
    try:
        return importlib.import_module("amdsmi"), ""
    except ImportError as exc:
        return None, f"amdsmi not importable: {exc}"
    except Exception as exc:  # the package imports its C library at import time
        return None, f"amdsmi failed to import: {exc}"


def _listing(directory: Path) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except OSError:
        return []


def nvidia_devices(root: Path) -> list[str]:
    """NVIDIA GPUs the kernel shows: device nodes and the driver's per-GPU entries."""
    nodes = [f"/dev/{name}" for name in _listing(root / "dev") if _NVIDIA_NODE.match(name)]
    return nodes + [f"/proc/driver/nvidia/gpus/{name}" for name in _listing(root / "proc/driver/nvidia/gpus")]


def choose_backend(root: Path = Path("/"), try_nvml: bool = True) -> GpuBackend:
    """The first reader that reads a GPU, or NoGpu saying whether a GPU is there unread.

    `root` is where sysfs, /proc and /dev are looked up ("/" on a host; a
    recorded tree in tests); `try_nvml=False` leaves NVML out, so a test of the
    AMD readers means the same on a machine that has NVIDIA GPUs.
    """
    reasons: list[str] = []
    nvml_note: str | None = None
    if try_nvml:
        nvml = NvmlBackend()
        if nvml.present:
            _log_other_vendor(root)
            return nvml
        nvml.close()
        nvml_note = nvml.note
        said = (nvml.note or "").removeprefix("no GPU: ")
        reasons.append(said if "NVML" in said else f"NVML: {said}")
    smi, why = import_amdsmi()
    if smi is not None:
        amd = AmdSmiBackend(smi, root)
        if amd.present:
            return amd
        amd.close()
        why = amd.note or "amdsmi found no GPUs"
    log.info("GPU sampler: %s", why)
    sysfs = SysfsBackend(root)
    if sysfs.present:
        return sysfs
    return _none(root, nvml_note, [*reasons, why])


def _none(root: Path, nvml_note: str | None, reasons: list[str]) -> NoGpu:
    present = nvidia_devices(root)
    if os.path.exists(root / "dev/kfd"):
        present.append("/dev/kfd (amdgpu compute) with no amdgpu card in sysfs")
    if present:
        return NoGpu(f"{PRESENT_BUT_UNREAD}: {'; '.join(present)} ({'; '.join(reasons)})", present=True)
    # Nothing shows a GPU: NVML's own words where it was asked (the note this daemon has always given).
    return NoGpu(nvml_note or NO_DEVICE_NOTE, present=False)


def _log_other_vendor(root: Path) -> None:
    cards = find_cards(root)
    if cards:
        log.warning("GPU sampler: NVML reads the NVIDIA GPUs; amdgpu card(s) %s are not sampled",
                    ", ".join(card.label for card in cards))
