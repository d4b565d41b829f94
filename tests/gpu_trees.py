"""Recorded host trees for the AMD GPU readers, laid out as the kernel lays out sysfs, /proc and /dev.

  ROOT/sys/devices/pci0000:00/0000:00:01.1/SLOT/      the PCI device: uevent, driver (link), vendor, device,
                                                      product_name, gpu_busy_percent, mem_info_vram_used/_total
  ROOT/sys/devices/.../SLOT/drm/cardN/device          -> ../../../SLOT   (and drm/renderDM the same)
  ROOT/sys/class/drm/cardN, renderDM                  -> ../../devices/.../SLOT/drm/cardN
  ROOT/sys/bus/pci/drivers/DRIVER/                    what a device's `driver` link points at
  ROOT/sys/class/kfd/kfd/topology/nodes/K/properties  "name value" lines (gfx_target_version, drm_render_minor)
  ROOT/proc/PID/fd/FD                                 -> /dev/dri/renderDM (a link, as the kernel shows it)
  ROOT/proc/PID/fdinfo/FD                             pos/flags/... then the drm-* keys of drm-usage-stats.rst
  ROOT/proc/PID/cgroup                                0::/system.slice/docker-ID.scope for a container's process

Values are what an AMD Radeon AI PRO R9700 (Navi 48, PCI id 1002:7551, gfx1201, 32 GiB) would show; no
AMD hardware recorded them, they follow the kernel's documented formats (amdgpu's fdinfo printer included).
"""

from __future__ import annotations

import os
from pathlib import Path

GIB = 2**30
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
         kfd_node: int = 1) -> Path:
    """One GPU's PCI device with its card and render node; returns the device directory."""
    device = root / _BRIDGE / slot
    vendor, dev = pci_id.split(":")
    _write(device / "uevent", f"DRIVER={driver}\nPCI_CLASS=30000\nPCI_ID={pci_id.upper()}\n"
                              f"PCI_SUBSYS_ID={vendor.upper()}:0E3B\nPCI_SLOT_NAME={slot}\n"
                              f"MODALIAS=pci:v0000{vendor.upper()}d0000{dev.upper()}sv0000{vendor.upper()}\n")
    (root / "sys/bus/pci/drivers" / driver).mkdir(parents=True, exist_ok=True)
    _link(device / "driver", f"../../../../bus/pci/drivers/{driver}")
    _write(device / "vendor", f"0x{vendor}\n")
    _write(device / "device", f"0x{dev}\n")
    if product is not None:
        _write(device / "product_name", f"{product}\n")
    if driver == "amdgpu":
        counters(device, busy, used, total)
    for node in (f"card{number}", f"renderD{render}"):
        _link(device / "drm" / node / "device", f"../../../{slot}")
        _link(root / "sys/class/drm" / node, f"../../devices/pci0000:00/0000:00:01.1/{slot}/drm/{node}")
    if gfx_target_version is not None:
        kfd(root, kfd_node, gfx_target_version, render)
    return device


def counters(device: Path, busy: int, used: int, total: int) -> None:
    _write(device / "gpu_busy_percent", f"{busy}\n")
    _write(device / "mem_info_vram_used", f"{used}\n")
    _write(device / "mem_info_vram_total", f"{total}\n")


def kfd(root: Path, node: int, gfx_target_version: int, render: int) -> None:
    """A KFD topology node; node 0 is the CPU (no SIMDs, gfx_target_version 0), as on a real host."""
    nodes = root / "sys/class/kfd/kfd/topology/nodes"
    if not (nodes / "0").exists():
        _write(nodes / "0/properties", "cpu_cores_count 16\nsimd_count 0\ngfx_target_version 0\n"
                                       "drm_render_minor 0\n")
    _write(nodes / str(node) / "properties",
           f"cpu_cores_count 0\nsimd_count 128\nvendor_id 4098\ndevice_id 30033\ngfx_target_version "
           f"{gfx_target_version}\ndrm_render_minor {render}\nlocation_id 768\ndomain 0\n")


def fdinfo_text(pdev: str, client_id: int, vram_kib: int | None = None, engines: dict[str, int] | None = None,
                resident: str | None = None, driver: str = "amdgpu") -> str:
    """An fdinfo file as amdgpu prints it: the file's own keys, then pasid and the drm-* keys, tab separated."""
    lines = ["pos:\t0", "flags:\t02100002", "mnt_id:\t26", "ino:\t1187", "pasid:\t32771",
             f"drm-driver:\t{driver}", f"drm-pdev:\t{pdev}", f"drm-client-id:\t{client_id}"]
    if resident is not None:
        lines += [f"drm-total-vram:\t{resident}", f"drm-resident-vram:\t{resident}"]
    if vram_kib is not None:
        lines += [f"drm-memory-vram:\t{vram_kib} KiB", "drm-memory-gtt: \t2048 KiB", "drm-memory-cpu: \t0 KiB",
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
