"""GPU admission of a job that loads a training run's model beside it (scoring): its need, and the runs' room.

A scoring job starts on its run's card only when the card's free memory covers
both what scoring needs and what the card's training runs may still grow into:
each running GPU training run of ours keeps room for its memory plan (the plan
admission started it on, less what it holds now), so scoring never pushes a
run past its plan. A run that has reached its peak holds it already (torch's
allocator keeps what it reserved), so beside a warmed-up run only the true
free memory counts; a run still starting up keeps its whole plan.

What scoring needs is the daemon's estimate until qwen_train plans scoring
itself: the run's model in bf16 (inference keeps no gradients or optimizer
state), the ASR judge's weights as they lie on disk (a Whisper checkpoint is
stored at the precision it runs in, or wider: an over-estimate is the safe
side), an allowance for the small judges (speaker verifier; DNSMOS and VAD run
on the CPU, from their wheels), generation's workspace (the talker's KV cache
at a long clone, a few hundred MiB at full size, and the codec decoder), and
the CUDA context. bench/RESULTS.md holds the measured figure to check it by.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from qwen_daemon.protocol import GpuSample
from qwen_daemon.protocol.gpu import GpuHolder, GpuReservation
from qwen_daemon.sharing.admission import GIB, RULE_RESERVED, RULE_ROOM, describe
from qwen_train.plan import count_params, read_config
from qwen_train.plan.memory import CONTEXT_BYTES
from qwen_train.spec import RunSpec

BF16_BYTES = 2
JUDGES_BYTES = GIB // 4  # resemblyzer's GE2E or a WavLM verifier, in fp32: tens of MiB; room to spare
GENERATION_BYTES = GIB  # KV cache of one long clone, logits and the codec decoder's activations
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def weight_bytes(model_dir: Path) -> int:
    """What a model dir's weight files take on disk (0 for a dir that cannot be read: the judge is then the
    scorer's own, whose size the allowance covers)."""
    try:
        return sum(p.stat().st_size for p in model_dir.rglob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    except OSError:
        return 0


def scoring_peak(spec: RunSpec, asr: str | None) -> int:
    """Bytes scoring run `spec`'s checkpoints needs on a card; ValueError naming what the estimate could not read."""
    params = count_params(read_config(Path(spec.model))).total
    asr_bytes = weight_bytes(Path(asr)) if asr else 0
    return params * BF16_BYTES + asr_bytes + JUDGES_BYTES + GENERATION_BYTES + CONTEXT_BYTES


def still_to_grow(plans: dict[str, int], holders: Sequence[GpuHolder], gpu: int) -> int:
    """What our runs on card `gpu` may still take under their plans: each run's plan less what it holds now."""
    held: dict[str, int] = {}
    for holder in holders:
        if holder.gpu == gpu and holder.run is not None:
            held[holder.run] = held.get(holder.run, 0) + holder.vram_bytes
    return sum(max(0, planned - held.get(run, 0)) for run, planned in plans.items())


def why_not_beside(job: str, need: int, gpus: Sequence[GpuSample], reservation: GpuReservation | None,
                   holders: Sequence[GpuHolder], plans: Callable[[int], dict[str, int]]) -> tuple[str, str] | None:
    """(rule, reason) when job `job`, needing `need` bytes, cannot start on the first card now; None when it can.
    `plans(gpu_bytes)`: the memory plans of our GPU training runs running now, by run."""
    if not gpus:
        return None
    if reservation is not None:
        return RULE_RESERVED, (f"the GPU is reserved by {reservation.actor}: {reservation.reason}; "
                               "`qwen-daemon gpu release` when it is free again")
    gpu = sorted(gpus, key=lambda g: g.index)[0]
    free, total = gpu.vram_free_bytes, gpu.vram_total_bytes
    if free is None or total is None:
        return RULE_ROOM, f"GPU {gpu.index} ({gpu.name}) has no VRAM reading to judge room by"
    planned = plans(total)
    growing = still_to_grow(planned, holders, gpu.index)
    if free >= need + growing:
        return None
    on_it = [describe(h) for h in holders if h.gpu == gpu.index]
    held = "; held by " + ", ".join(on_it) if on_it else ""
    kept = (f", and {growing / GIB:.1f} GiB must stay free for run{'s' if len(planned) > 1 else ''} "
            f"{', '.join(sorted(planned))} to reach {'their' if len(planned) > 1 else 'its'} memory plan"
            if growing else "")
    return RULE_ROOM, (f"GPU {gpu.index} ({gpu.name}) has {free / GIB:.1f} GiB free of {total / GIB:.1f} GiB; "
                       f"{job} needs {need / GIB:.1f} GiB to load the model and its judges{kept}{held}")
