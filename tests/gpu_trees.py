"""Recorded host trees for the AMD GPU readers, laid out as the kernel lays out sysfs, /proc and /dev.

  ROOT/sys/devices/pci0000:00/0000:00:01.1/SLOT/      the PCI device: uevent, driver (link), vendor, device,
                                                      product_name, gpu_busy_percent, mem_info_vram_used/_total,
                                                      mem_info_gtt_used/_total, power/runtime_status
  ROOT/sys/devices/.../SLOT/drm/cardN/device          -> ../../../SLOT   (and drm/renderDM the same)
  ROOT/sys/class/drm/cardN, renderDM                  -> ../../devices/.../SLOT/drm/cardN
  ROOT/sys/bus/pci/devices/SLOT                       -> ../../../devices/.../SLOT (where amdsmi's address leads)
  ROOT/sys/bus/pci/drivers/DRIVER/                    what a device's `driver` link points at
  ROOT/sys/class/kfd/kfd/topology/nodes/K/properties  "name value" lines in the kernel's order
  ROOT/sys/class/kfd/kfd/topology/nodes/K/mem_banks/0/properties   heap_type, size_in_bytes, ...
  ROOT/proc/PID/fd/FD                                 -> /dev/dri/renderDM (a link, as the kernel shows it)
  ROOT/proc/PID/fdinfo/FD                             pos/flags/... then the drm-* keys of drm-usage-stats.rst
  ROOT/proc/PID/cgroup                                0::/system.slice/docker-ID.scope for a container's process

The formats follow published captures: prometheus/procfs's sysfs fixtures (the amdgpu counters, one
integer and a newline each), the kernel's KFD topology (kfd_topology.c's node and bank properties, and
the fdinfo patch mails' key layout), amdgpu_top's and nvtop's issues (runtime_status, an APU's GTT-held
working set: 25258000 KiB of drm-memory-gtt against 5348 KiB of VRAM on a Radeon 890M) and btop's
issue 1794 (an ASRock BC-250, 1002:13fe, whose gpu_busy_percent read fails with "Operation not
supported"). Values are what an AMD Radeon AI PRO R9700 (Navi 48, 1002:7551, gfx1201, 32 GiB) would show
unless a helper says otherwise; no AMD hardware recorded them.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import ClassVar

GIB = 2**30
MIB = 2**20
R9700_VRAM = 32 * GIB
_BRIDGE = "sys/devices/pci0000:00/0000:00:01.1"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _link(path: Path, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)


def card(root: Path, number: int = 1, slot: str = "0000:03:00.0", render: int = 128, driver: str = "amdgpu",
         pci_id: str = "1002:7551", product: str | None = "AMD Radeon AI PRO R9700", busy: int = 37,
         used: int = 6 * GIB, total: int = R9700_VRAM, gfx_target_version: int | None = 120001,
         kfd_node: int = 1, runtime_status: str = "active", kfd_memory: int | None = None) -> Path:
    """One GPU's PCI device with its card and render node; returns the device directory.

    `kfd_memory` is the GPU node's local memory as KFD reports it: the VRAM total on a discrete card
    (the default), the GTT size on an APU whose kernel hands GTT out as local memory.
    """
    device = root / _BRIDGE / slot
    vendor, dev = pci_id.split(":")
    _write(device / "uevent", f"DRIVER={driver}\nPCI_CLASS=30000\nPCI_ID={pci_id.upper()}\n"
                              f"PCI_SUBSYS_ID={vendor.upper()}:0E3B\nPCI_SLOT_NAME={slot}\n"
                              f"MODALIAS=pci:v0000{vendor.upper()}d0000{dev.upper()}sv0000{vendor.upper()}\n")
    (root / "sys/bus/pci/drivers" / driver).mkdir(parents=True, exist_ok=True)
    _link(device / "driver", f"../../../../bus/pci/drivers/{driver}")
    _link(root / "sys/bus/pci/devices" / slot, f"../../../devices/pci0000:00/0000:00:01.1/{slot}")
    _write(device / "vendor", f"0x{vendor}\n")
    _write(device / "device", f"0x{dev}\n")
    _write(device / "power/runtime_status", f"{runtime_status}\n")
    if product is not None:
        _write(device / "product_name", f"{product}\n")
    if driver == "amdgpu":
        counters(device, busy, used, total)
    for node in (f"card{number}", f"renderD{render}"):
        _link(device / "drm" / node / "device", f"../../../{slot}")
        _link(root / "sys/class/drm" / node, f"../../devices/pci0000:00/0000:00:01.1/{slot}/drm/{node}")
    if gfx_target_version is not None:
        kfd(root, kfd_node, gfx_target_version, render, slot, memory=total if kfd_memory is None else kfd_memory,
            pci_device=int(dev, 16))
    return device


def counters(device: Path, busy: int, used: int, total: int) -> None:
    _write(device / "gpu_busy_percent", f"{busy}\n")
    _write(device / "mem_info_vram_used", f"{used}\n")
    _write(device / "mem_info_vram_total", f"{total}\n")


def sleep(device: Path, asleep: bool = True) -> None:
    """The card runtime-suspends (or resumes): what its power/runtime_status then reads."""
    (device / "power/runtime_status").write_text("suspended\n" if asleep else "active\n")


def _location(slot: str) -> tuple[int, int]:
    """(domain, location_id) as KFD prints them for a PCI address: location_id is bus << 8 | devfn."""
    domain, bus, rest = slot.split(":")
    dev, fn = rest.split(".")
    return int(domain, 16), int(bus, 16) << 8 | int(dev, 16) << 3 | int(fn, 16)


def kfd(root: Path, node: int, gfx_target_version: int, render: int, slot: str, memory: int,
        pci_device: int = 0x7551, cpu_cores: int = 0) -> None:
    """A KFD topology GPU node and its memory bank; node 0 is the CPU (no SIMDs, gfx_target_version 0)."""
    nodes = root / "sys/class/kfd/kfd/topology/nodes"
    if not (nodes / "0").exists():
        _write(nodes / "0/properties", "cpu_cores_count 16\nsimd_count 0\nmem_banks_count 1\ncaches_count 0\n"
                                       "gfx_target_version 0\nvendor_id 0\ndevice_id 0\nlocation_id 0\ndomain 0\n"
                                       "drm_render_minor 0\n")
    domain, location = _location(slot)
    _write(nodes / str(node) / "properties",
           f"cpu_cores_count {cpu_cores}\nsimd_count 128\nmem_banks_count 1\ncaches_count 140\nio_links_count 1\n"
           f"p2p_links_count 0\ncpu_core_id_base 0\nsimd_id_base 2147487744\nmax_waves_per_simd 16\n"
           f"lds_size_in_kb 64\ngds_size_in_kb 0\nnum_gws 64\nwave_front_size 32\narray_count 8\n"
           f"simd_arrays_per_engine 2\ncu_per_simd_array 8\nsimd_per_cu 2\nmax_slots_scratch_cu 32\n"
           f"gfx_target_version {gfx_target_version}\nvendor_id 4098\ndevice_id {pci_device}\n"
           f"location_id {location}\ndomain {domain}\ndrm_render_minor {render}\nhive_id 0\nnum_sdma_engines 2\n"
           f"num_sdma_xgmi_engines 0\nnum_sdma_queues_per_engine 6\nnum_cp_queues 8\n"
           f"max_engine_clk_fcompute 2920\nlocal_mem_size 0\nfw_version 2340\ncapability 671588992\n"
           f"debug_prop 1495\nsdma_fw_version 830\nunique_id 0\nnum_xcc 1\nmax_engine_clk_ccompute 5100\n")
    _write(nodes / str(node) / "mem_banks/0/properties",
           f"heap_type 1\nsize_in_bytes {memory}\nflags 0\nwidth 256\nmem_clk_max 2518\n")


APU_SLOT, APU_CARVE_OUT, APU_GTT = "0000:c5:00.0", 512 * MIB, 48 * GIB


def apu(root: Path, kfd_memory: int = APU_GTT) -> Path:
    """A Ryzen AI 9 HX 370's Radeon 890M (1002:150e, gfx1150): a 512 MiB VRAM carve-out, 48 GiB of GTT.

    Its kernel hands GTT out as KFD local memory (the bank is the GTT size, not the VRAM's); no
    product_name (an iGPU has no board FRU), so it is named by its PCI id.
    """
    device = card(root, number=0, slot=APU_SLOT, render=128, pci_id="1002:150e", product=None, busy=12,
                  used=380 * MIB, total=APU_CARVE_OUT, gfx_target_version=110500, kfd_memory=kfd_memory)
    _write(device / "mem_info_gtt_used", f"{26 * GIB}\n")
    _write(device / "mem_info_gtt_total", f"{APU_GTT}\n")
    return device


def fdinfo_text(pdev: str, client_id: int, vram_kib: int | None = None, engines: dict[str, int] | None = None,
                resident: str | None = None, driver: str = "amdgpu", gtt_kib: int = 2048) -> str:
    """An fdinfo file as amdgpu prints it: the file's own keys, then pasid and the drm-* keys, tab separated."""
    lines = ["pos:\t0", "flags:\t02100002", "mnt_id:\t26", "ino:\t1187", "pasid:\t32771",
             f"drm-driver:\t{driver}", f"drm-pdev:\t{pdev}", f"drm-client-id:\t{client_id}"]
    if resident is not None:
        lines += [f"drm-total-vram:\t{resident}", f"drm-resident-vram:\t{resident}"]
    if vram_kib is not None:
        lines += [f"drm-memory-vram:\t{vram_kib} KiB", f"drm-memory-gtt: \t{gtt_kib} KiB", "drm-memory-cpu: \t0 KiB",
                  f"amd-memory-visible-vram:\t{min(vram_kib, 262144)} KiB", "amd-evicted-vram:\t0 KiB"]
    lines += [f"drm-engine-{name}:\t{ns} ns" for name, ns in (engines or {}).items()]
    return "\n".join(lines) + "\n"


def open_fd(root: Path, pid: int, fd: int, target: str, fdinfo: str | None = None) -> None:
    """An fd of `pid`: its link and, for a DRM file, its fdinfo."""
    _link(root / "proc" / str(pid) / "fd" / str(fd), target)
    _write(root / "proc" / str(pid) / "fdinfo" / str(fd), fdinfo if fdinfo is not None else "pos:\t0\nflags:\t02\n")


def cgroup(root: Path, pid: int, container: str) -> None:
    """The pid's cgroup line as Docker's systemd cgroup driver places a container's processes (cgroup v2)."""
    _write(root / "proc" / str(pid) / "cgroup", f"0::/system.slice/docker-{container}.scope\n")


class OpenAudit:
    """Every file opened under `root` while active, seen by an audit hook (sys.addaudithook), so whatever
    code opens it, through whatever call, is seen; and the kernel's refusals replayed: a file in `refuse`
    fails to open with its errno, as amdgpu's gpu_busy_percent does on a BC-250 (EOPNOTSUPP).

    An audit hook stays for the life of the interpreter, so one is installed once and does nothing
    while no audit is active.
    """

    _active: ClassVar[OpenAudit | None] = None
    _installed: ClassVar[bool] = False

    def __init__(self, root: Path, refuse: Mapping[Path, int] | None = None) -> None:
        self.root = root
        self.refuse = {os.path.realpath(path): code for path, code in (refuse or {}).items()}
        self.opened: list[str] = []

    def __enter__(self) -> OpenAudit:
        if not OpenAudit._installed:
            sys.addaudithook(OpenAudit._hook)
            OpenAudit._installed = True
        OpenAudit._active = self
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        OpenAudit._active = None

    @staticmethod
    def _hook(event: str, args: tuple[object, ...]) -> None:
        audit = OpenAudit._active
        if audit is None or event != "open" or not isinstance(args[0], str | bytes | os.PathLike):
            return
        path = os.fsdecode(os.fspath(args[0]))
        if not path.startswith(str(audit.root)):
            return
        audit.opened.append(path)
        code = audit.refuse.get(os.path.realpath(path))
        if code is not None:
            raise OSError(code, os.strerror(code), path)

    def under(self, directory: Path) -> set[str]:
        """The names (relative paths) of the files opened inside `directory`, whichever link led there."""
        real = os.path.realpath(directory)
        inside = (os.path.realpath(path) for path in self.opened)
        return {os.path.relpath(path, real) for path in inside if path.startswith(real + os.sep)}


EOPNOTSUPP = errno.EOPNOTSUPP
