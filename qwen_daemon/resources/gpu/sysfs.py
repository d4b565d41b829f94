"""AMD GPUs without amdsmi: the amdgpu sysfs counters per card, DRM fdinfo per process.

What ROCm installs is not needed: the kernel's amdgpu driver publishes the
busy share and VRAM of each card in sysfs (cards.py), and each DRM client's
VRAM and engine time in fdinfo (fdinfo.py), which is where tools like
amdgpu_top and nvtop read them too. Cards are found once, at the start; one
that stops answering later (unplugged, reset, its driver unbound) is named in
the tick's note and skipped, and read again as soon as its files return.
"""

from __future__ import annotations

from pathlib import Path

from qwen_daemon.protocol import GpuSample
from qwen_daemon.protocol.resources import PRESENT_BUT_UNREAD
from qwen_daemon.resources.gpu.backend import BackendName, EngineShares, ProcessMemory, join_problems
from qwen_daemon.resources.gpu.cards import AmdCard, find_cards, read_cards
from qwen_daemon.resources.gpu.engines import EngineTracker
from qwen_daemon.resources.gpu.fdinfo import FdinfoReader


class SysfsBackend:
    """The amdgpu cards under `root` that read at the start, and their clients' fdinfo."""

    name: BackendName = "sysfs"

    def __init__(self, root: Path = Path("/"), tracker: EngineTracker | None = None) -> None:
        self.root = root
        self.cards: list[AmdCard]
        self.cards, self.unread = find_cards(root)
        self._fdinfo = FdinfoReader(root, {card.slot: card.index for card in self.cards},
                                    tracker=tracker or EngineTracker())
        # Cards that did not read at the start stay unread: an error on every sample, never "no GPU".
        self.note: str | None = f"{PRESENT_BUT_UNREAD}: " + "; ".join(self.unread) if self.unread else None

    @property
    def present(self) -> bool:
        return bool(self.cards or self.unread)

    def read(self) -> tuple[list[GpuSample], str | None]:
        gpus, problems = read_cards(self.cards)
        return gpus, join_problems([*problems, *([self.note] if self.note else [])])

    def processes(self) -> ProcessMemory | None:
        return self._fdinfo.scan()[0]

    def process_usage(self) -> tuple[ProcessMemory | None, EngineShares]:
        return self._fdinfo.scan()

    def close(self) -> None:
        return None
