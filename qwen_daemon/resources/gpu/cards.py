"""amdgpu cards as sysfs shows them: which cards there are, what each is, and one reading of each.

Everything is read under a root directory (the host's is "/"), so tests read
recorded trees laid out as the kernel lays out sysfs:

  ROOT/sys/class/drm/cardN/device        the card's PCI device directory (a link to it)
      uevent                             DRIVER=amdgpu, PCI_ID=1002:7551, PCI_SLOT_NAME=0000:03:00.0
      driver                             a link whose name is the bound driver
      product_name                       the marketing name, where the board offers one
      power/runtime_status               "active", or "suspended" while the card sleeps
      gpu_busy_percent                   the GPU's busy share in percent (amdgpu)
      mem_info_vram_used, _total         VRAM in bytes (amdgpu)
  ROOT/sys/class/kfd/kfd/topology/...    the card's ISA and memory banks (kfd.py)

Only cards whose driver is amdgpu count; a card is given the GPU index of
its place among them, ordered by card number, once, when the sampler starts:
an index must not shift under a run because another card went away. Every
such card is kept, whether or not its counters read: one that does not read
now is tried again at every tick, and its DRM clients are attributed to it
all along. Of a sleeping card only `power/runtime_status` is read (with
`uevent` and `product_name` once, at the start): its counters would wake it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from qwen_daemon.protocol import GpuSample
from qwen_daemon.resources.gpu.kfd import KfdNode, is_apu, node_for
from qwen_daemon.resources.gpu.readings import CardState, counter, runtime_suspended

_CARD = re.compile(r"^card(\d+)$")
BUSY, VRAM_USED, VRAM_TOTAL = "gpu_busy_percent", "mem_info_vram_used", "mem_info_vram_total"


@dataclass(frozen=True)
class AmdCard:
    """One amdgpu card: `index` is the GPU index samples use, `slot` the PCI address fdinfo's drm-pdev names."""

    index: int
    card: str
    device: Path
    slot: str
    name: str

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


def find_cards(root: Path) -> list[AmdCard]:
    """Every amdgpu card on the host, in card-number order, whether or not its counters read now."""
    cards: list[AmdCard] = []
    for _, card in _card_numbers(root):
        device = root / "sys/class/drm" / card / "device"
        if driver_of(device) != "amdgpu":
            continue
        uevent = _uevent(device)
        slot = uevent.get("PCI_SLOT_NAME") or os.path.basename(os.path.realpath(device))
        cards.append(AmdCard(index=len(cards), card=card, device=device, slot=slot.lower(),
                             name=_name(device, uevent)))
    return cards


class CardReader:
    """Reads one card each tick, remembering what it learnt: its KFD node (arch, APU) and its last VRAM."""

    def __init__(self, card: AmdCard, root: Path) -> None:
        self.card = card
        self._root = root
        self._node: KfdNode | None = None
        self._apu_known = False
        self.state = CardState(card.index, card.name, card.label)
        self._find_node()

    def _find_node(self) -> None:
        """The card's KFD node, looked for until found (KFD may come up after the daemon does)."""
        if self._node is None:
            self._node = node_for(self._root, self.card.slot)
            self.state.arch = self._node.arch if self._node else None

    def read(self, now: float, wake: bool = False) -> GpuSample:
        """One reading; a sleeping card is left asleep unless `wake` (admission, about to use it)."""
        self._find_node()
        if not wake and runtime_suspended(self.card.device):
            return self.state.asleep()
        device = self.card.device
        busy = counter(device / BUSY, limit=100)
        used, total = counter(device / VRAM_USED), counter(device / VRAM_TOTAL)
        if not self._apu_known and self._node is not None and total[0] is not None:
            self.state.apu, self._apu_known = is_apu(self._node, total[0]), True
        return self.state.awake(busy, used, total, now)

    @property
    def apu(self) -> bool:
        return self.state.apu
