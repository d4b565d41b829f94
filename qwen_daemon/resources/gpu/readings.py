"""One GPU's readings, each read or not on its own, and what a reader remembers of the card between ticks.

Every AMD reader builds its GpuSample here, so they agree on three rules:
a reading that fails is None with its reason, never a reason to drop the
card (a BC-250's busy figure is refused with EOPNOTSUPP while its VRAM reads
fine, and admission still needs that VRAM); a runtime-suspended card is not
read at all, since reading its counters wakes it, and shows its last VRAM
reading with when it was taken; and a card that read nothing at all is an
error ("GPU present but unread"), never "no GPU".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from qwen_daemon.protocol import GpuSample
from qwen_daemon.protocol.resources import GPU_METRIC_WORDS, PRESENT_BUT_UNREAD, GpuMetric

T = TypeVar("T", int, float)
Reading = tuple[T | None, str | None]
"""A value, or None and why it was not read."""

ASLEEP = "not read: the card is asleep (runtime-suspended), and reading it would wake it"
_METRICS: tuple[GpuMetric, ...] = ("busy_percent", "vram_used_bytes", "vram_total_bytes")


def runtime_suspended(device: Path) -> bool:
    """Whether the PCI device is runtime-suspended: its `power/runtime_status` reads "suspended".

    Reading that file does not wake the device. Anything else (active,
    resuming, a file that is missing or unreadable) counts as awake: a card
    must never go unread because its power state could not be told.
    """
    try:
        return (device / "power" / "runtime_status").read_text(encoding="utf-8").strip() == "suspended"
    except OSError:
        return False


@dataclass(frozen=True)
class Vram:
    used: int
    total: int
    at: float


@dataclass
class CardState:
    """What a reader knows of one card across ticks: its last VRAM read awake, and whether it is an APU."""

    index: int
    name: str
    label: str
    arch: str | None = None
    apu: bool = False
    last: Vram | None = None

    def awake(self, busy: Reading[float], used: Reading[int], total: Reading[int], now: float) -> GpuSample:
        """The sample of a card that was read, each metric as it came."""
        readings: dict[GpuMetric, Reading[float] | Reading[int]] = {
            "busy_percent": busy, "vram_used_bytes": used, "vram_total_bytes": total}
        if used[0] is not None and total[0] is not None:
            self.last = Vram(used[0], total[0], now)
        return GpuSample(
            index=self.index, name=self.name, busy_percent=None if busy[0] is None else float(busy[0]),
            vram_used_bytes=used[0], vram_total_bytes=total[0], arch=self.arch,
            unread={metric: why or "not read" for metric, (value, why) in readings.items() if value is None},
            process_memory="vram+gtt" if self.apu else "vram")

    def asleep(self) -> GpuSample:
        """The sample of a sleeping card: nothing read; VRAM as last read awake, or None."""
        last = self.last
        unread: dict[GpuMetric, str] = {"busy_percent": ASLEEP}
        if last is None:
            unread |= {"vram_used_bytes": ASLEEP, "vram_total_bytes": ASLEEP}
        return GpuSample(
            index=self.index, name=self.name, busy_percent=None, vram_used_bytes=last.used if last else None,
            vram_total_bytes=last.total if last else None, arch=self.arch, unread=unread, sleeping=True,
            vram_read_at=last.at if last else None, process_memory="vram+gtt" if self.apu else "vram")


def counter(path: Path, limit: int | None = None) -> Reading[int]:
    """A sysfs counter holding one non-negative integer; `limit` is the most a plausible reading can be."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError as exc:
        return None, f"cannot read {path.name}: {exc.strerror or exc}"
    if not text.isdigit():
        return None, f"{path.name} holds no number ({text[:24]!r})"
    value = int(text)
    if limit is not None and value > limit:
        return None, f"{path.name} reads {value}, which cannot be right (at most {limit})"
    return value, None


def unread_note(gpu: GpuSample, label: str) -> str | None:
    """The tick's words for what of this GPU was not read; None when all was.

    A card that read nothing while awake begins with PRESENT_BUT_UNREAD: its
    evidence is missing, and the promotion gate refuses on it.
    """
    where = f"GPU {gpu.index} ({label})"
    if gpu.sleeping:
        held = " (VRAM as last read awake)" if gpu.vram_read_at is not None else " (VRAM never read awake)"
        return f"{where} asleep (runtime-suspended): not read, so as not to wake it{held}"
    if not gpu.unread:
        return None
    reasons = "; ".join(f"{GPU_METRIC_WORDS[metric]}: {why}" for metric, why in gpu.unread.items())
    if all(metric in gpu.unread for metric in _METRICS):
        return f"{PRESENT_BUT_UNREAD}: {where}: {reasons}"
    return f"{where} partly unread: {reasons}"
