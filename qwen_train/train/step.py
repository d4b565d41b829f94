"""One optimizer step: draw the batches at the cursor, accumulate, and apply only what the guard allows.

Its own module because three callers share it: the train loop, the diagnose
replay (replay.py) and the benchmarks, which time exactly this.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from qwen_train.status import Losses
from qwen_train.train.data.cursor import advance, batch_indices
from qwen_train.train.guard.nonfinite import step_problems
from qwen_train.train.progress import Progress
from qwen_train.train.session import Session


@dataclass(frozen=True)
class StepOutcome:
    losses: Losses
    grad_norm: float
    frames: int
    problems: list[str]  # empty: the step was applied
    # Whether any rank was asked to stop, agreed in this step's one reduce, so every rank stops after the
    # same step (a signal reaches the ranks at different moments).
    stop_agreed: bool = False


def _next_cursor(p: Progress) -> None:
    """Move past batches the guard has marked to skip."""
    while (p.cursor.epoch, p.cursor.position) in p.skip:
        p.cursor = advance(p.cursor)


def train_step(s: Session, stop_asked: Callable[[], bool] | None = None) -> StepOutcome:
    """Accumulate `grad_accum` micro-batches, then apply the step only if the guard allows.

    The loss parts and the gradient norm come to the host in one sync, which
    logging needs anyway; a refused step leaves weights, optimizer and
    scheduler untouched. With a prefetcher the batch was prepared by a worker
    (pinned, so the copy to the GPU overlaps); it is the same batch either way.
    `stop_asked` is this rank's stop signal (the loop's StopFlag).
    """
    p, train = s.progress, s.spec.train
    if s.injector is not None:
        s.injector.begin_step(p.step + 1)
    accum = train.grad_accum
    frames, totals, p.drawn = 0, torch.zeros(3, device=s.device), []
    _next_cursor(p)
    p.last_step_cursor = p.cursor
    for micro in range(accum):
        _next_cursor(p)
        indices = batch_indices(p.cursor, s.accelerator.process_index, s.lengths)
        p.drawn.append(indices)
        if s.prefetcher is not None:
            batch, mels = s.prefetcher.get(p.cursor, indices, p.skip)
        else:
            batch, mels, _rows = s.data.train.batch(indices)
        frames += int(batch["cp_mask"].sum())
        ref_ids = batch.pop("ref_index", None)
        refs = ref_ids.tolist() if ref_ids is not None else None
        ahead = s.device.type == "cuda"
        batch = {k: v.to(s.device, non_blocking=ahead) for k, v in batch.items()}
        if ahead:
            mels = [m.to(s.device, non_blocking=True) for m in mels]
        sync = contextlib.nullcontext() if micro == accum - 1 else s.accelerator.no_sync(s.objective)
        with sync, s.accelerator.autocast():
            values = s.objective(batch, mels, refs)
            s.accelerator.backward(values[0] / accum)
        totals = totals + values.detach().float() / accum
        p.cursor = advance(p.cursor)
        p.micro_steps += 1
    grad_norm = s.accelerator.clip_grad_norm_(s.objective.parameters(), train.max_grad_norm)
    asked = 1.0 if stop_asked is not None and stop_asked() else 0.0
    packed = torch.cat([totals, torch.as_tensor(grad_norm, device=s.device).float().reshape(1),
                        torch.tensor([asked], device=s.device)])
    if s.accelerator.num_processes > 1:
        # The global batch's loss, not one rank's; and whether any rank was asked to stop: a signal
        # reaches the ranks at different moments, and a rank that stopped alone would hang the others.
        packed = s.accelerator.reduce(packed, reduction="mean")
    total, talker, cp, norm, anyone = packed.tolist()
    losses = Losses(total=total, talker=talker, code_predictor=cp)
    problems = step_problems({"total": total, "talker": talker, "code_predictor": cp}, norm, s.spec.guard)
    if problems:
        s.optimizer.zero_grad(set_to_none=True)
        return StepOutcome(losses, norm, frames, problems, anyone > 0)
    s.optimizer.step()
    s.optimizer.zero_grad(set_to_none=True)
    s.scheduler.step()
    p.step += 1
    if p.step < p.lr_scale_until:
        for group in s.optimizer.param_groups:
            group["lr"] *= p.lr_scale
    return StepOutcome(losses, norm, frames, [], anyone > 0)
