"""GPU admission: a training run starts only when its card has room for its memory plan and is not reserved.

The card is shared, so "free" is what the reader reads on it when admission
decides (total minus used, whoever uses it; a sleeping card is woken for
that reading, since the run is about to use it), and a card whose VRAM does
not read is refused with the reason, never taken as empty (an unread busy
figure does not matter here). The need is the run's memory plan
(qwen_train.plan: the same numbers `qwen-train plan` prints). A run that cannot start is refused
naming the holders of the card (our runs, containers, other processes, with
the memory each holds) and the rule; where the operator chose to queue, it
waits instead and starts when room appears. Only training runs that train on
a GPU are judged: a preprocess, a diagnose replay, a gate, a `device: cpu` run,
or any run on a host whose sampler sees no GPU starts as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import psutil

from qwen_daemon.jobs import cgroups
from qwen_daemon.jobs.job import Job
from qwen_daemon.protocol import GpuSample
from qwen_daemon.protocol.gpu import GpuHolder, GpuReservation
from qwen_train.plan import plan_for_spec
from qwen_train.spec import RunSpec

RULE_RESERVED = "gpu-reserved"
RULE_ROOM = "gpu-room"
GIB = 2**30
# A training run warns once the card's free memory falls below this share while it trains:
# another tenant is growing, and the next allocation spike may fail.
HEADROOM_WARNING = 0.05
MODE_WORDS = {"full": "full fine-tune", "lora": "LoRA adapter run"}  # the plan is the mode's (train.adapter)


def gpu_spec(job: Job) -> RunSpec | None:
    """The spec of a job that will train on a GPU, or None for everything admission leaves alone."""
    spec = job.spec
    if not isinstance(spec, RunSpec) or spec.train.device == "cpu":
        return None
    return spec


def _command(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())[:120]
    except psutil.Error:
        return ""


def holders(processes: Mapping[int, Mapping[int, int]] | None, run_pids: Mapping[str, Iterable[int]],
            proc: str = "/proc") -> list[GpuHolder]:
    """Everyone holding GPU memory (`processes`: host pid -> {GPU index: bytes}), our runs named, largest first."""
    if not processes:
        return []
    owner = {pid: run for run, pids in run_pids.items() for pid in pids}
    found = [GpuHolder(gpu=gpu, pid=pid, vram_bytes=used, run=owner.get(pid), container=cgroups.container_of(pid, proc),
                       command=_command(pid))
             for pid, per_gpu in processes.items() for gpu, used in per_gpu.items() if used > 0]
    return sorted(found, key=lambda h: (h.gpu, -h.vram_bytes, h.pid))


def describe(holder: GpuHolder) -> str:
    who = f"run {holder.run}" if holder.run else (
        f"container {holder.container[:12]}" if holder.container else (holder.command.split(" ")[0] or "a process"))
    return f"{who} (pid {holder.pid}) {holder.vram_bytes / GIB:.1f} GiB"


def planned_peak(spec: RunSpec, gpu_bytes: int) -> int:
    """The run's planned peak on a card of `gpu_bytes`; ValueError naming what the plan could not read."""
    return plan_for_spec(spec, gpu_bytes=gpu_bytes).peak_bytes


def why_not(spec: RunSpec, gpus: Sequence[GpuSample], reservation: GpuReservation | None,
            who: list[GpuHolder], peak: Callable[[RunSpec, int], int] = planned_peak) -> tuple[str, str] | None:
    """(rule, reason) when the run cannot start on the GPU now, None when it can (or there is no GPU to judge)."""
    if not gpus:
        return None
    if reservation is not None:
        return RULE_RESERVED, (f"the GPU is reserved by {reservation.actor}: {reservation.reason}; "
                               "`qwen-daemon gpu release` when it is free again")
    wanted = max(1, spec.train.processes)
    for gpu in sorted(gpus, key=lambda g: g.index)[:wanted]:
        free = gpu.vram_free_bytes
        if free is None or gpu.vram_total_bytes is None:
            return RULE_ROOM, f"GPU {gpu.index} ({gpu.name}) has no VRAM reading to judge room by: {_unread(gpu)}"
        need = peak(spec, gpu.vram_total_bytes)
        if free < need:
            on_it = [describe(h) for h in who if h.gpu == gpu.index]
            held = "; held by " + ", ".join(on_it) if on_it else ""
            return RULE_ROOM, (f"GPU {gpu.index} ({gpu.name}) has {free / GIB:.1f} GiB free of "
                               f"{gpu.vram_total_bytes / GIB:.1f} GiB and run {spec.name} plans a "
                               f"{need / GIB:.1f} GiB peak as a {MODE_WORDS[spec.train.mode]} (`qwen-train plan` "
                               f"shows its parts){held}")
    return None


def _unread(gpu: GpuSample) -> str:
    reasons = [why for metric, why in gpu.unread.items() if metric != "busy_percent"]
    return "; ".join(dict.fromkeys(reasons)) or "not read"


def headroom_warning(gpus: Sequence[GpuSample], used_by_run: int) -> str | None:
    """A warning while a run trains and its card's free memory is under HEADROOM_WARNING of the total."""
    for gpu in sorted(gpus, key=lambda g: g.index)[:max(1, used_by_run)]:
        free = gpu.vram_free_bytes
        if free is not None and gpu.vram_total_bytes and free < HEADROOM_WARNING * gpu.vram_total_bytes:
            return (f"GPU {gpu.index} has {free / GIB:.1f} GiB free of {gpu.vram_total_bytes / GIB:.1f} GiB "
                    f"(under {HEADROOM_WARNING:.0%}): another tenant may push this run out of memory")
    return None
