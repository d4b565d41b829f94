"""AMD GPUs without amdsmi: the amdgpu sysfs counters per card, DRM fdinfo per process.

What ROCm installs is not needed: the kernel's amdgpu driver publishes the
busy share and VRAM of each card in sysfs (cards.py), and each DRM client's
memory and engine time in fdinfo (fdinfo.py), which is where tools like
amdgpu_top and nvtop read them too. Cards are found once, at the start, and
every one is read at every tick, each counter on its own: a counter that
fails (gone, refused with EOPNOTSUPP, no number) is unread with its reason,
the others still count, and it is read again at the next tick. A sleeping
card is not read at all (readings.py says why).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from qwen_daemon.protocol import GpuSample
from qwen_daemon.resources.gpu.backend import BackendName, EngineShares, ProcessMemory, join_problems
from qwen_daemon.resources.gpu.cards import AmdCard, CardReader, find_cards
from qwen_daemon.resources.gpu.engines import EngineTracker
from qwen_daemon.resources.gpu.fdinfo import FdinfoReader
from qwen_daemon.resources.gpu.readings import unread_note


class SysfsBackend:
    """Every amdgpu card under `root`, read or not, and their clients' fdinfo."""

    name: BackendName = "sysfs"

    def __init__(self, root: Path = Path("/"), tracker: EngineTracker | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.cards: list[AmdCard] = find_cards(root)
        self._readers = [CardReader(card, root) for card in self.cards]
        self._clock = clock
        self._fdinfo = FdinfoReader(root, {card.slot: card.index for card in self.cards},
                                    tracker=tracker or EngineTracker(), gtt_gpus=self._apus)
        self.note: str | None = None  # per-card problems are the tick's, never standing: each is retried

    @property
    def present(self) -> bool:
        return bool(self.cards)

    def _apus(self) -> list[int]:
        return [reader.card.index for reader in self._readers if reader.apu]

    def read(self, wake: bool = False) -> tuple[list[GpuSample], str | None]:
        now = self._clock()
        gpus = [reader.read(now, wake) for reader in self._readers]
        notes = (unread_note(gpu, reader.card.label) for gpu, reader in zip(gpus, self._readers, strict=True))
        return gpus, join_problems(note for note in notes if note)

    def processes(self) -> ProcessMemory | None:
        return self._fdinfo.scan()[0]

    def process_usage(self) -> tuple[ProcessMemory | None, EngineShares]:
        return self._fdinfo.scan()

    def close(self) -> None:
        return None
