"""The shared GPU on the host screen: each card's memory, who holds it, the reservation, the queue.

Hemma's card serves other tenants too, so the operator must see at a glance
why a run waits: which process or run holds how much, and whether someone
reserved the card. The same facts `qwen-daemon gpu status` prints. A card
whose memory was not read says why, a sleeping one shows its last reading
and its time, and on an APU the holders' memory is said to count GTT too.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from qwen_daemon.protocol.display import SCREEN
from qwen_daemon.protocol.gpu import GpuHolder, GpuStatus
from qwen_daemon.protocol.gpu_text import ASLEEP_WORDS, all_unread, counted_text, free_text, unread_reasons
from qwen_daemon.protocol.resources import GpuSample


def _who(holder: GpuHolder) -> Text:
    if holder.run:
        return Text(f"run {holder.run}", style="green")
    if holder.container:
        return Text(f"container {holder.container[:12]}", style="cyan")
    return Text(holder.command or "a process", style="yellow")


def _gpu_text(gpu: GpuSample) -> Text:
    """A card's free memory, or why it is not known now; a sleeping card and an APU's counting said plainly."""
    text = Text(f"GPU{gpu.index} {gpu.name}: ")
    text.append(free_text(gpu, SCREEN), style="" if gpu.vram_read_now else "yellow")
    if gpu.sleeping:
        text.append(f"; {ASLEEP_WORDS}", style="dim")
    elif gpu.unread:
        text.append(f"; not read: {unread_reasons(gpu)}", style="red" if all_unread(gpu) else "yellow")
    counted = counted_text(gpu)
    if counted:
        text.append(f"; {counted}", style="cyan")
    return text


def gpu_renderable(status: GpuStatus) -> RenderableType:
    parts: list[RenderableType] = []
    held = status.reservation
    if held is not None:
        parts.append(Text(f"RESERVED by {held.actor} since {SCREEN.clock(held.since)}: {held.reason} "
                          "(no GPU run starts; `qwen-daemon gpu release` ends it)", style="bold yellow"))
    else:
        parts.append(Text("not reserved: GPU runs start when their plan fits", style="dim"))
    if status.queued:
        parts.append(Text(f"queued for the GPU: {', '.join(status.queued)}", style="yellow"))
    if status.note:
        parts.append(Text(status.note, style="red" if "unread" in status.note else "dim"))
    for gpu in status.gpus:
        parts.append(_gpu_text(gpu))
    if status.holders:
        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        for column in ("GPU", "pid", "memory", "holder"):
            table.add_column(column, justify="right" if column in ("pid", "memory") else "left")
        for holder in status.holders:
            table.add_row(str(holder.gpu), str(holder.pid), SCREEN.size(holder.vram_bytes), _who(holder))
        parts.append(table)
    elif status.gpus:
        parts.append(Text("no process holds GPU memory", style="dim"))
    return Group(*parts)
