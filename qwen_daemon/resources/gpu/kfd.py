"""The KFD topology: which ISA an amdgpu card is, and whether it is an APU.

ROCm's kernel driver (KFD) describes every compute node under a root
directory (the host's is "/"), laid out as the kernel lays it out:

  ROOT/sys/class/kfd/kfd/topology/nodes/K/properties
      "name value" lines: gfx_target_version (major * 10000 + minor * 100 + stepping: 120001 is
      gfx1201), simd_count (0 on the CPU node), cpu_cores_count, drm_render_minor, domain and
      location_id (the PCI address: bus << 8 | devfn)
  ROOT/sys/class/kfd/kfd/topology/nodes/K/mem_banks/B/properties
      heap_type (0 system memory, 1 and 2 the GPU's local memory, public and private) and size_in_bytes

The topology is the arch's source of truth: amdsmi's own string is known to
be malformed in released versions (ROCm 6.x prints 120001 as `gfx12001`, 7.x
its not-supported value as `gfxffffffffffffffff`), so amdsmi's is used only
where the topology cannot be read, and only when it has the shape of an
LLVM target name. Reading these files never touches the GPU itself, so they
are read for a sleeping card too.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_NODES = "sys/class/kfd/kfd/topology/nodes"
# An LLVM AMDGPU target: "gfx", the major version in decimal (6-9, 10-19), then minor and stepping as one
# hex digit each (gfx90a, gfx942, gfx1100, gfx1201). amdsmi's gfx12001 and gfxffffffffffffffff do not fit.
_TARGET = re.compile(r"^gfx(?:[6-9]|1\d)[0-9a-f]{2}$")
_HEAP_SYSTEM, _HEAPS_LOCAL = "0", ("1", "2")
# The default UMA carve-out: no discrete card KFD supports has this little VRAM.
CARVE_OUT_BYTES = 512 * 2**20


@dataclass(frozen=True)
class KfdNode:
    """One GPU node of the topology: its target, where it sits on the PCI bus, and its memory banks."""

    name: str
    gfx_target_version: int
    slot: str | None
    cpu_cores: int = 0
    local_memory_bytes: int = 0
    system_heap: bool = False

    @property
    def arch(self) -> str | None:
        return gfx_name(self.gfx_target_version)


def gfx_name(target_version: int) -> str | None:
    """KFD's gfx_target_version as the ISA name: 120001 -> gfx1201, 90010 -> gfx90a (minor and stepping in hex)."""
    if target_version <= 0:
        return None
    major, minor, stepping = target_version // 10000, (target_version // 100) % 100, target_version % 100
    return f"gfx{major}{minor:x}{stepping:x}"


def plausible_arch(text: str) -> bool:
    """Whether a reader's arch string has the shape of an LLVM target name (gfx1201 yes, gfx12001 no)."""
    return bool(_TARGET.match(text))


def properties(path: Path) -> dict[str, str]:
    """A KFD properties file as a dict; {} when it cannot be read."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return {}
    pairs = (line.split(None, 1) for line in lines)
    return {pair[0]: pair[1].strip() for pair in pairs if len(pair) == 2}


def _number(props: dict[str, str], key: str) -> int:
    value = props.get(key, "")
    return int(value) if value.isdigit() else 0


def _slot(props: dict[str, str]) -> str | None:
    """The node's PCI address from domain and location_id (bus << 8 | devfn), as sysfs and fdinfo spell it."""
    location = props.get("location_id", "")
    if not location.isdigit():
        return None
    value = int(location)
    bus, devfn = value >> 8, value & 0xFF
    return f"{_number(props, 'domain'):04x}:{bus:02x}:{devfn >> 3:02x}.{devfn & 7:x}"


def _banks(node: Path) -> tuple[int, bool]:
    """(the node's local memory in bytes, whether a bank is system memory)."""
    try:
        names = sorted(os.listdir(node / "mem_banks"))
    except OSError:
        return 0, False
    local, system = 0, False
    for name in names:
        bank = properties(node / "mem_banks" / name / "properties")
        heap = bank.get("heap_type")
        if heap in _HEAPS_LOCAL:
            local += _number(bank, "size_in_bytes")
        system = system or heap == _HEAP_SYSTEM
    return local, system


def read_nodes(root: Path) -> list[KfdNode]:
    """The GPU nodes of the topology (nodes with SIMDs and a target), in node order; [] without KFD."""
    nodes = root / _NODES
    try:
        names = sorted(os.listdir(nodes), key=lambda n: (len(n), n))
    except OSError:
        return []
    found: list[KfdNode] = []
    for name in names:
        props = properties(nodes / name / "properties")
        target = _number(props, "gfx_target_version")
        if target <= 0 or _number(props, "simd_count") <= 0:
            continue  # the CPU node, or a node that did not read
        local, system = _banks(nodes / name)
        found.append(KfdNode(name, target, _slot(props), _number(props, "cpu_cores_count"), local, system))
    return found


def node_for(root: Path, slot: str | None) -> KfdNode | None:
    """The topology node of the card at PCI address `slot` (the first, where a partitioned card has several)."""
    if slot is None:
        return None
    return next((node for node in read_nodes(root) if node.slot == slot.lower()), None)


def is_apu(node: KfdNode | None, vram_total: int | None) -> bool:
    """Whether the card is an APU, whose working set lives in GTT (system memory), not in its VRAM.

    The topology says so where the GPU node has CPU cores (the combined node
    of early APUs) or a system-memory heap, or where its local memory exceeds
    the card's VRAM total: on an APU the kernel hands GTT out as the GPU's
    local memory. A KFD GPU with no more VRAM than the default carve-out is
    an APU whose kernel does not (yet) do that.
    """
    if node is None:
        return False
    if node.cpu_cores > 0 or node.system_heap:
        return True
    return vram_total is not None and (node.local_memory_bytes > vram_total or vram_total <= CARVE_OUT_BYTES)
