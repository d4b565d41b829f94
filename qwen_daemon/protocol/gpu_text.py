"""A GPU sample in words, for both clients (the CLI and the dashboard), so they say the same things plainly.

What a sample may hold beyond numbers: a metric that was not read, with its
reason (an unread busy figure is "unread", never 0%); a sleeping card, not
read so as not to wake it, whose VRAM is its last reading with the time it
was taken; and an APU, whose per-process memory counts GTT as well as VRAM.
Plain strings only, formatted for one medium (display.Display); colour and
layout stay each client's own.
"""

from __future__ import annotations

from qwen_daemon.protocol.display import Display
from qwen_daemon.protocol.resources import GPU_METRIC_WORDS, GpuSample, ProcessMemory, ResourceSummary

ASLEEP_WORDS = "asleep (runtime-suspended: not read, so as not to wake it)"
COUNTED_WORDS: dict[ProcessMemory, str] = {"vram": "VRAM", "vram+gtt": "VRAM+GTT"}


def all_unread(gpu: GpuSample) -> bool:
    """Nothing of an awake GPU was read: an error, not a quiet GPU."""
    return not gpu.sleeping and set(gpu.unread) == set(GPU_METRIC_WORDS)


def unread_reasons(gpu: GpuSample) -> str:
    """'busy: cannot read gpu_busy_percent: Operation not supported; ...' for each metric not read."""
    return "; ".join(f"{GPU_METRIC_WORDS[metric]}: {why}" for metric, why in gpu.unread.items())


def busy_text(gpu: GpuSample, medium: Display) -> str:
    """The busy figure, or what stands in its place: 'asleep' or 'unread'."""
    if gpu.busy_percent is not None:
        return medium.percent(gpu.busy_percent)
    return "asleep" if gpu.sleeping else "unread"


def vram_text(gpu: GpuSample, medium: Display, now: float | None = None, sep: str = " of ",
              free: bool = False) -> str:
    """'6.0 GiB of 32.0 GiB' ('(26.0 GiB free)' added with `free`), a sleeping card's last reading with its
    time, or 'VRAM unread' / 'VRAM never read awake'."""
    if gpu.vram_used_bytes is None or gpu.vram_total_bytes is None:
        return "VRAM never read awake" if gpu.sleeping else "VRAM unread"
    text = f"{medium.size(gpu.vram_used_bytes)}{sep}{medium.size(gpu.vram_total_bytes)}"
    if gpu.vram_read_at is not None:
        text += f" as of {medium.clock(gpu.vram_read_at, now)}"
    if free and gpu.vram_free_bytes is not None:
        text += f" ({medium.size(gpu.vram_free_bytes)} free)"
    return text


def free_text(gpu: GpuSample, medium: Display, now: float | None = None) -> str:
    """'26.0 GiB free of 32.0 GiB' (with its time, for a sleeping card's last reading), or why it is not known."""
    free = gpu.vram_free_bytes
    if free is None or gpu.vram_total_bytes is None:
        return vram_text(gpu, medium, now)
    when = f" as of {medium.clock(gpu.vram_read_at, now)}" if gpu.vram_read_at is not None else ""
    return f"{medium.size(free)} free of {medium.size(gpu.vram_total_bytes)}{when}"


def counted_text(gpu: GpuSample) -> str | None:
    """Where per-process memory counts more than VRAM, saying so; None where it is VRAM alone."""
    if gpu.process_memory == "vram":
        return None
    return f"per-process memory counts {COUNTED_WORDS[gpu.process_memory]} (an APU: its working set is in GTT)"


def gpu_line(gpu: GpuSample, medium: Display, now: float | None = None, free: bool = False) -> str:
    """'AMD Radeon AI PRO R9700 (gfx1201): 61.0% busy, 9.0 GiB of 32.0 GiB', with what was not read and why."""
    head = f"{gpu.name} ({gpu.arch})" if gpu.arch else gpu.name
    vram = vram_text(gpu, medium, now, free=free)
    if gpu.sleeping:
        body = f"{ASLEEP_WORDS}, " + (f"VRAM {vram}" if gpu.vram_used_bytes is not None else vram)
    elif all_unread(gpu):
        body = f"UNREAD: {unread_reasons(gpu)}"
    else:
        why = gpu.unread.get("busy_percent")
        busy = f"busy unread ({why})" if why else f"{busy_text(gpu, medium)} busy"
        vram_why = "; ".join(why for metric, why in gpu.unread.items() if metric != "busy_percent")
        body = f"{busy}, {vram} ({vram_why})" if vram_why else f"{busy}, {vram}"
    counted = counted_text(gpu)
    return f"{head}: {body}" + (f"; {counted}" if counted else "")


def summary_counted(summary: ResourceSummary) -> list[str]:
    """A line per GPU whose per-process memory in a run's summary counted more than VRAM."""
    return [f"run GPU memory on GPU{index} counts {COUNTED_WORDS[what]} (an APU: its working set is in GTT)"
            for index, what in summary.gpu_process_memory.items()]
