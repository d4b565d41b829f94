"""The host bar: is the sampler alive, and what does the host look like now.

Sampler liveness comes first because every resource figure in the dashboard
depends on it; a dead sampler is shown in red with the age of its last sample
rather than leaving the old figures to look current. The GPU reader in use
(nvml, amdsmi, sysfs) is named beside the GPU figures, so an AMD host read
through sysfs is not mistaken for an NVIDIA one. With no GPU the daemon's
note (e.g. "no GPU: NVML library not found", or "GPU present but unread: ..."
in red, since that is an error) is shown instead of zeros; a figure that was
not read reads "unread" (the host screen says why), a sleeping card "asleep"
with its last VRAM reading and its time, and an APU is marked so.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from qwen_daemon.protocol import GpuSample, HostView
from qwen_daemon.protocol.display import SCREEN
from qwen_daemon.protocol.gpu_text import all_unread, busy_text, vram_text
from qwen_daemon.protocol.resources import PRESENT_BUT_UNREAD
from qwen_tui.poller import Snapshot


def _gpu_text(gpu: GpuSample, now: float | None) -> Text:
    """'GPU0 name gfx1201 37.0% 6.0 GiB/32.0 GiB'; an unread figure says 'unread', a sleeping card 'asleep'."""
    arch = f" {gpu.arch}" if gpu.arch else ""
    text = Text(f"GPU{gpu.index} {gpu.name}{arch}")
    if all_unread(gpu):
        text.append(" UNREAD", style="bold red")
        return text
    read = gpu.busy_percent is not None
    busy = busy_text(gpu, SCREEN) if read or gpu.sleeping else "busy unread"
    text.append(f" {busy}", style="" if read else ("dim" if gpu.sleeping else "yellow"))
    text.append(f" {vram_text(gpu, SCREEN, now, sep='/')}", style="" if gpu.vram_read_now else "dim")
    if gpu.process_memory != "vram":
        text.append(" APU", style="cyan")
    return text


def host_text(host: HostView | None, host_error: str | None = None, now: float | None = None) -> Text:
    text = Text()
    if host is None:
        text.append("host: ", style="bold")
        text.append(host_error or "no host report yet", style="yellow" if host_error else "dim")
        return text
    sampler = host.sampler
    text.append("sampler ", style="bold")
    if sampler.alive:
        text.append("alive", style="green")
    else:
        text.append("NOT RUNNING", style="bold red")
    text.append(f" (every {sampler.period_s:g}s, last sample {SCREEN.age(sampler.last_sample, now)})")
    sample = host.sample
    if sample is None:
        text.append("   no host sample yet", style="dim")
        return text
    ram = f"{SCREEN.size(sample.ram_used_bytes)}/{SCREEN.size(sample.ram_total_bytes)}"
    text.append(f"   CPU {SCREEN.percent(sample.cpu_percent)}   RAM {ram}")
    backend = sample.gpu_backend or sampler.gpu_backend
    if sample.gpus:
        for gpu in sample.gpus:
            text.append("   ")
            text.append_text(_gpu_text(gpu, now))
        if backend:
            text.append(f" via {backend}", style="dim")
    else:
        note = sample.gpu_note or sampler.gpu_note or "no GPU reported"
        text.append(f"   {note}", style="bold red" if note.startswith(PRESENT_BUT_UNREAD) else "yellow")
    return text


class HostBar(Static):
    """Bound to the app's `snapshot` reactive."""

    def on_mount(self) -> None:
        self.watch(self.app, "snapshot", self._show, init=True)

    def _show(self, snapshot: Snapshot | None) -> None:
        if snapshot is None:
            self.update(host_text(None))
            return
        self.update(host_text(snapshot.host, snapshot.host_error))
