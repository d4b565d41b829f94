"""amdgpu cards as sysfs shows them: which cards there are, what each is, and one reading of each.

Everything is read under a root directory (the host's is "/"), so tests read
recorded trees laid out as the kernel lays out sysfs:

  ROOT/sys/class/drm/cardN/device        the card's PCI device directory (a link to it)
      uevent                             DRIVER=amdgpu, PCI_ID=1002:7551, PCI_SLOT_NAME=0000:03:00.0
      driver                             a link whose name is the bound driver
      product_name                       the marketing name, where the board offers one
      gpu_busy_percent                   the GPU's busy share in percent (amdgpu)
      mem_info_vram_used, _total         VRAM in bytes (amdgpu)
  ROOT/sys/class/drm/renderDM/device     the same PCI device, through its render node
  ROOT/sys/class/kfd/kfd/topology/nodes/K/properties
                                         "name value" lines; gfx_target_version (e.g. 120001 for
                                         gfx1201) and drm_render_minor (M) tie a node to its card

Only cards whose driver is amdgpu count; a card is given the GPU index of
its place among them, ordered by card number, once, when the sampler starts:
an index must not shift under a run because another card went away.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from qwen_daemon.protocol import GpuSample

_CARD = re.compile(r"^card(\d+)$")
COUNTERS = ("gpu_busy_percent", "mem_info_vram_used", "mem_info_vram_total")


@dataclass(frozen=True)
class AmdCard:
    """One amdgpu card: `index` is the GPU index samples use, `slot` the PCI address fdinfo's drm-pdev names."""

    index: int
    card: str
    device: Path
    slot: str
    name: str
    arch: str | None

    @property
    def label(self) -> str:
        return f"{self.card} ({self.slot})"


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace").strip()


def _uevent(device: Path) -> dict[str, str]:
    try:
        lines = _read(device / "uevent").splitlines()
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in lines if "=" in line)


def driver_of(device: Path) -> str | None:
    """The bound driver: the `driver` link's name, else the uevent's DRIVER (None: no driver bound)."""
    try:
        return os.path.basename(os.readlink(device / "driver"))
    except OSError:
        return _uevent(device).get("DRIVER")


def gfx_name(target_version: int) -> str | None:
    """KFD's gfx_target_version (major * 10000 + minor * 100 + stepping) as the ISA name: 120001 -> gfx1201.

    Minor and stepping are written in hex in the name (90010 -> gfx90a), as LLVM names targets.
    """
    if target_version <= 0:
        return None
    major, minor, stepping = target_version // 10000, (target_version // 100) % 100, target_version % 100
    return f"gfx{major}{minor:x}{stepping:x}"


def _properties(path: Path) -> dict[str, str]:
    try:
        lines = _read(path).splitlines()
    except OSError:
        return {}
    pairs = (line.split(None, 1) for line in lines)
    return {pair[0]: pair[1].strip() for pair in pairs if len(pair) == 2}


def arch_of(root: Path, device: Path) -> str | None:
    """The card's ISA from the KFD topology node whose render node is this card's device."""
    nodes = root / "sys/class/kfd/kfd/topology/nodes"
    try:
        names = sorted(os.listdir(nodes))
    except OSError:
        return None
    try:
        here = device.resolve(strict=True)
    except OSError:
        return None
    for name in names:
        props = _properties(nodes / name / "properties")
        minor, target = props.get("drm_render_minor", ""), props.get("gfx_target_version", "")
        if not (minor.isdigit() and target.isdigit()):
            continue
        try:
            render = (root / f"sys/class/drm/renderD{minor}/device").resolve(strict=True)
        except OSError:
            continue
        if render == here:
            return gfx_name(int(target))
    return None


def _name(device: Path, uevent: dict[str, str]) -> str:
    try:
        product = _read(device / "product_name")
    except OSError:
        product = ""
    if product:
        return product
    pci_id = uevent.get("PCI_ID")
    if pci_id is None:
        try:
            pci_id = f"{int(_read(device / 'vendor'), 16):04x}:{int(_read(device / 'device'), 16):04x}"
        except (OSError, ValueError):
            pci_id = "unknown PCI id"
    return f"AMD GPU [{pci_id.lower()}]"


def _card_numbers(root: Path) -> list[tuple[int, str]]:
    try:
        names = os.listdir(root / "sys/class/drm")
    except OSError:
        return []
    found = [(int(m.group(1)), name) for name in names if (m := _CARD.match(name))]
    return sorted(found)


def find_cards(root: Path) -> tuple[list[AmdCard], list[str]]:
    """(the amdgpu cards whose counters read now, one line per amdgpu card that does not).

    A card that does not read at the start is present but unread: the caller
    says so as an error, never as "no GPU".
    """
    cards: list[AmdCard] = []
    unread: list[str] = []
    for _, card in _card_numbers(root):
        device = root / "sys/class/drm" / card / "device"
        if driver_of(device) != "amdgpu":
            continue
        uevent = _uevent(device)
        slot = uevent.get("PCI_SLOT_NAME") or os.path.basename(os.path.realpath(device))
        index = len(cards)
        found = AmdCard(index=index, card=card, device=device, slot=slot.lower(), name=_name(device, uevent),
                        arch=arch_of(root, device))
        try:
            read_card(found)
        except (OSError, ValueError) as exc:
            unread.append(f"amdgpu {found.label}: {_why(exc)}")
            continue
        cards.append(found)
    return cards, unread


def _why(exc: OSError | ValueError) -> str:
    if isinstance(exc, OSError):
        return f"cannot read {os.path.basename(exc.filename or '?')}: {exc.strerror or exc}"
    return f"unreadable value: {exc}"


def read_card(card: AmdCard) -> GpuSample:
    """One reading of the card's counters; OSError when a file is gone, ValueError when one holds no number."""
    busy, used, total = (int(_read(card.device / name)) for name in COUNTERS)
    return GpuSample(index=card.index, name=card.name, busy_percent=float(busy), vram_used_bytes=used,
                     vram_total_bytes=total, arch=card.arch)


def read_cards(cards: list[AmdCard]) -> tuple[list[GpuSample], list[str]]:
    """Every card's reading, and a line for each card that did not read (gone, or its files unreadable)."""
    gpus: list[GpuSample] = []
    problems: list[str] = []
    for card in cards:
        try:
            gpus.append(read_card(card))
        except (OSError, ValueError) as exc:
            problems.append(f"GPU {card.index} ({card.label}) not read: {_why(exc)}")
    return gpus, problems
