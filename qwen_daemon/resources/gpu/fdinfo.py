"""Which processes hold VRAM on which amdgpu card, and how busy they keep it: DRM fdinfo.

Every open DRM file has ROOT/proc/PID/fdinfo/FD with the keys the kernel's
Documentation/gpu/drm-usage-stats.rst defines: `drm-driver` (mandatory),
`drm-pdev` (the PCI slot), `drm-client-id`, `drm-engine-<name>: <uint> ns`,
`drm-engine-capacity-<name>`, and per memory region `drm-resident-<region>`
or its older alias `drm-memory-<region>` (printed by amdgpu only), in bytes
or with a KiB/MiB unit. One line per key, a colon, then whitespace that does
not count.

A client (one `struct drm_file`) opened through several fds, or inherited by
a child, shows up once per fd: it is counted once, keyed by (drm-pdev,
drm-client-id) as the document asks, and given to the lowest pid holding it.
Only fds that point into /dev/dri are read (ROOT/proc/PID/fd/FD is the link),
so the scan does not open every fdinfo on the host. A process whose fds this
daemon may not read is not seen: its VRAM shows in the card's used total, not
under a pid.

Engine time counts the work the driver schedules for the client; tools that
read it (amdgpu_top) report that ROCm compute, submitted through /dev/kfd's
user-mode queues, does not appear there, so a HIP trainer's engine share can
read low while its VRAM, allocated on the same DRM file's VM, does show. None
of this has been checked on AMD hardware here: the reader follows the
documented format only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from qwen_daemon.resources.gpu.backend import EngineShares, ProcessMemory, merge_memory
from qwen_daemon.resources.gpu.engines import EngineReading, EngineTracker

_NUMBER = re.compile(r"^(\d+)(?:\s+(\S+))?$")
_MEMORY_UNITS = {None: 1, "KiB": 1024, "MiB": 1024 * 1024}


@dataclass(frozen=True)
class DrmClient:
    """One DRM client as one fdinfo file describes it."""

    pid: int
    driver: str
    pdev: str | None = None
    client_id: int | None = None
    resident: Mapping[str, int] = field(default_factory=dict)  # region -> bytes
    engines: Mapping[str, int] = field(default_factory=dict)  # engine -> ns busy so far
    capacity: Mapping[str, int] = field(default_factory=dict)  # engine -> identical engines behind the name


def _number(value: str, units: Mapping[str | None, int]) -> int | None:
    match = _NUMBER.match(value)
    if match is None or match.group(2) not in units:
        return None
    return int(match.group(1)) * units[match.group(2)]


def parse_fdinfo(text: str, pid: int) -> DrmClient | None:
    """The DRM client an fdinfo file describes; None when it is not a DRM file (no drm-driver)."""
    keys: dict[str, str] = {}
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if colon and key.startswith("drm-") and not any(c.isspace() for c in key):
            keys[key] = value.strip()
    driver = keys.get("drm-driver")
    if not driver:
        return None
    resident: dict[str, int] = {}
    engines: dict[str, int] = {}
    capacity: dict[str, int] = {}
    legacy: dict[str, int] = {}
    for key, value in keys.items():
        name = key[len("drm-"):]
        if name.startswith("engine-capacity-"):
            count = _number(value, {None: 1})
            if count:
                capacity[name[len("engine-capacity-"):]] = count
        elif name.startswith("engine-"):
            busy = _number(value, {"ns": 1})
            if busy is not None:
                engines[name[len("engine-"):]] = busy
        elif name.startswith(("resident-", "memory-")):
            size = _number(value, _MEMORY_UNITS)
            if size is not None:
                region = name.split("-", 1)[1]
                (resident if name.startswith("resident-") else legacy)[region] = size
    client = keys.get("drm-client-id", "")
    return DrmClient(
        pid=pid,
        driver=driver,
        pdev=keys.get("drm-pdev", "").lower() or None,
        client_id=int(client) if client.isdigit() else None,
        resident={**legacy, **resident},  # drm-memory-* is an alias of drm-resident-*: the standard name wins
        engines=engines,
        capacity=capacity,
    )


def _pids(proc: Path) -> list[int]:
    try:
        return sorted(int(name) for name in os.listdir(proc) if name.isdigit())
    except OSError:
        return []


def _drm_fds(proc: Path, pid: int) -> Iterator[str]:
    """The pid's fds that are open on a /dev/dri node (gone or unreadable processes have none)."""
    fd_dir = proc / str(pid) / "fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return
    for fd in fds:
        try:
            target = os.readlink(fd_dir / fd)
        except OSError:
            continue
        if target.startswith("/dev/dri/"):
            yield fd


def scan_clients(root: Path, drivers: Collection[str] = ("amdgpu",)) -> list[DrmClient]:
    """Every DRM client of `drivers` on the host, once each, lowest pid first."""
    proc = root / "proc"
    seen: set[Hashable] = set()
    clients: list[DrmClient] = []
    for pid in _pids(proc):
        for fd in _drm_fds(proc, pid):
            try:
                text = (proc / str(pid) / "fdinfo" / fd).read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue  # closed between the listing and the read, or the process ended
            client = parse_fdinfo(text, pid)
            if client is None or client.driver not in drivers:
                continue
            key: Hashable = (client.pdev, client.client_id) if client.client_id is not None else (pid, fd)
            if key in seen:
                continue
            seen.add(key)
            clients.append(client)
    return clients


def _no_gtt() -> Collection[int]:
    return ()


@dataclass
class FdinfoReader:
    """Per-process memory and engine shares on the cards `slots` names (PCI slot -> GPU index).

    A process's memory is its VRAM, and on the GPUs `gtt_gpus()` names (APUs,
    whose VRAM is a small carve-out and whose working set the kernel places
    in GTT: one published capture shows 25 GB of GTT against 5 MB of VRAM for
    one process) its GTT as well.
    """

    root: Path
    slots: Mapping[str, int]
    tracker: EngineTracker = field(default_factory=EngineTracker)
    gtt_gpus: Callable[[], Collection[int]] = _no_gtt

    def scan(self) -> tuple[ProcessMemory, EngineShares]:
        """One pass over /proc: host pid -> {GPU: memory bytes}, and the engine shares since the previous pass."""
        memory: ProcessMemory = {}
        readings: list[EngineReading] = []
        with_gtt = set(self.gtt_gpus())
        for client in scan_clients(self.root):
            index = self.slots.get(client.pdev or "")
            if index is None:
                continue  # a card this reader does not sample
            used = client.resident.get("vram", 0) + (client.resident.get("gtt", 0) if index in with_gtt else 0)
            if used:
                merge_memory(memory, client.pid, index, used)
            if client.engines:
                key = (client.pdev, client.client_id if client.client_id is not None else ("pid", client.pid))
                readings.append(EngineReading(key, client.pid, index, client.engines, client.capacity))
        return memory, self.tracker.update(readings)
