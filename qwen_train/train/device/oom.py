"""A GPU out of memory inside a step ends the run in its own state, with what to do next, and nothing lost.

An out-of-memory error is not a fault of the weights or the data: the same
micro-batch with a smaller batch size or frame budget would have fit. So the
run neither retries blindly (the next long micro-batch fails again) nor
reports a generic crash: it stops where it is. The step is not applied (an
error in forward or backward comes before the optimizer; one inside the
optimizer's own step leaves the live weights half-updated, which is why
nothing of the live state is saved after it), no checkpoint is written
(a write already in flight was snapshotted before the step, and completes),
so the newest durable checkpoint stays what `--resume` continues from, and the
run ends `failed_oom` (exitcodes.FAILED_OOM) with a message naming the
micro-batch (rows, codec frames, padded positions), the memory the device
had, and the change to make: a smaller `train.batch_size` or
`train.frame_budget`, as `qwen-train plan` predicts what fits.

torch raises `torch.OutOfMemoryError` for CUDA and for ROCm (HIP) alike; on a
CPU the test fault (faults.py, kind "oom") raises the same error from inside
the forward.
"""

from __future__ import annotations

import sys

import torch

from qwen_train import exitcodes
from qwen_train.train.session import Session

GIB = float(1 << 30)


def _memory(device: torch.device) -> str:
    if device.type != "cuda":
        return f"on {device.type}"
    index = device.index if device.index is not None else torch.cuda.current_device()
    total = torch.cuda.get_device_properties(index).total_memory * torch.cuda.get_per_process_memory_fraction(index)
    peak = torch.cuda.max_memory_allocated(index)
    return f"on {device} (peak {peak / GIB:.1f} GiB allocated of {total / GIB:.1f} GiB)"


def _micro_batch(s: Session, indices: list[int]) -> str:
    """Rows, scored codec frames and padded positions of the micro-batch, rebuilt on the host (no GPU memory)."""
    batch, _mels, _rows = s.data.train.batch(indices)
    rows, length = batch["attention_mask"].shape
    frames = int(batch["cp_mask"].sum())
    return f"{rows} rows, {frames} codec frames, padded to {rows} x {length} = {rows * length} positions"


def _advice(s: Session) -> str:
    train = s.spec.train
    knob = (f"train.frame_budget (now {train.frame_budget})" if train.frame_budget is not None
            else f"train.batch_size (now {train.batch_size}) or set train.frame_budget")
    return (f"Lower {knob} in the spec and continue with --resume; `qwen-train plan SPEC --gpu-memory SIZE` "
            "prints what fits")


def end_out_of_memory(s: Session, exc: torch.OutOfMemoryError, micro_steps_before: int) -> int:
    """Record the failed step and end the run `failed_oom`; `micro_steps_before` is the count before the step."""
    p, accum = s.progress, s.spec.train.grad_accum
    s.optimizer.zero_grad(set_to_none=True)  # the partial step's gradients go; nothing is applied
    if s.device.type == "cuda":
        torch.cuda.empty_cache()
    s.ckpt.wait()  # a write in flight holds a state from before this step: let it become durable
    done = p.micro_steps - micro_steps_before
    step = p.step + 1
    if p.drawn and done < len(p.drawn):
        where = f"micro-batch {len(p.drawn)}/{accum} ({_micro_batch(s, p.drawn[-1])})"
    else:
        where = f"the optimizer step, after its {accum} micro-batch{'es' if accum != 1 else ''}"
    newest = s.ckpt.newest()
    kept = (f"the newest durable checkpoint, {newest.name}, is kept" if newest is not None
            else "no durable checkpoint exists yet, so a resume starts from step 0")
    detail = str(exc).strip().splitlines()[0][:240] if str(exc).strip() else type(exc).__name__
    message = (f"GPU out of memory in step {step}, {where}, {_memory(s.device)}: {detail}. Step {step} was not "
               f"applied and nothing was written after it; {kept}. {_advice(s)}")
    s.heartbeat.event("out_of_memory", message, step)
    s.heartbeat.state("failed_oom", message)
    print(f"qwen-train: {message}", file=sys.stderr, flush=True)
    return exitcodes.FAILED_OOM
