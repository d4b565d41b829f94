"""`train.frame_budget: "auto"`: the budget sized once, at a run's first launch, to the memory the card has for it.

`qwen-train plan` says the largest micro-batch a card holds, and an operator used
to copy it into the spec by hand; a spec without a budget trained `batch_size`
rows, a few hundred frames on a card that holds thousands, and left the GPU idle.
"auto" asks the memory plan (plan/) for the largest budget that fits the memory
this run may use: the card's (under any per-process cap), less a headroom
(AUTO_HEADROOM, twice the plan's default: measured, see below) and less what
the card's other tenants hold at launch (on Hemma's
shared R9700: a document sidecar, llama.cpp). It keeps at least
`MIN_BATCHES` micro-batches an epoch, so a small bundle on a large card still
takes steps.

The number is chosen once. It is written to the run dir (`frame_budget.json`)
before the first step, and every later launch of the run reads it back: the
cursor's plan is a function of the budget, so a resume on a card with more or
less free memory keeps the batches it started with (and says so) instead of
failing the cursor check or silently training other batches. On a CPU there is
no card to size for, and "auto" is `batch_size` rows, recorded the same way.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import torch

from qwen_train.atomic import atomic_write_bytes
from qwen_train.plan.for_spec import frames_budget, plan_for_spec
from qwen_train.plan.memory import GIB
from qwen_train.safe_read import MiB, decode_json, read_regular
from qwen_train.spec import RunSpec
from qwen_train.train.data.budget import BudgetError, padded
from qwen_train.train.recipes.recipe import device_memory

BUDGET_FILE = "frame_budget.json"
MIN_BATCHES = 4  # micro-batches an epoch (per process) the auto budget leaves at least
# The headroom an "auto" budget leaves, twice the plan's default: measured on an H100 under a 32 GiB cap with
# Riksdag-length rows at a 3,000-position budget and 4 micro-batches a step (bench/RESULTS.md, issue 31), torch
# allocated 7% more than the plan's peak and reserved 14% more (the allocator's partly used blocks); a budget
# sized at 10% headroom is one long batch from running out of memory there.
AUTO_HEADROOM = 0.20


class BudgetChoice(msgspec.Struct, frozen=True):
    """What "auto" resolved to, and from what: the run dir keeps it, status.json shows `why`."""

    frame_budget: int | None  # None: batch_size rows a micro-batch (no GPU to size for)
    why: str
    device: str = ""
    usable_bytes: int = 0
    kept: bool = False  # read back from the run dir (a later launch), not sized now


def read_choice(run_dir: Path) -> BudgetChoice | None:
    """The choice the run's first launch recorded, or None before it; a damaged file is named, never guessed."""
    path = run_dir / BUDGET_FILE
    if not path.exists():
        return None
    try:
        return decode_json(read_regular(path, MiB, what="frame budget record", nofollow=True), BudgetChoice, str(path))
    except ValueError as exc:
        raise BudgetError(f"{exc}: the run's recorded frame budget is unreadable; restore it, or start the run "
                          "in a new run dir") from None


def _free_for_run(device: torch.device) -> tuple[int, int, int]:
    """(this process's cap, bytes others hold, the card's total) on a CUDA/HIP device."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    free, total = torch.cuda.mem_get_info(index)
    ours = torch.cuda.memory_reserved(index)
    cap = device_memory(device) or total
    return cap, max(0, total - free - ours), total


def _size(spec: RunSpec, device: torch.device, longest: int, total_positions: int, pad_multiple: int,
          world_size: int) -> BudgetChoice:
    cap, others, total = _free_for_run(device)
    headroom = min(0.99, AUTO_HEADROOM + others / max(cap, 1))
    plan = plan_for_spec(spec, gpu_bytes=cap, headroom=headroom, frames=1)
    usable = int(cap * (1 - headroom))
    budget = frames_budget(plan.max_frames or 0)
    budget -= budget % pad_multiple if pad_multiple > 1 else 0
    need = padded(longest, pad_multiple)
    card = torch.cuda.get_device_name(device)
    held = f"{others / GIB:.1f} GiB held by others" if others else "no other tenant"
    if budget < need:
        raise BudgetError(f'train.frame_budget "auto": {card} has {usable / GIB:.1f} GiB for this run ({held}, '
                          f"{total / GIB:.1f} GiB in all), room for {budget} padded positions a micro-batch, and "
                          f"the longest train row needs {need}: free memory on the card, or set train.frame_budget "
                          "and recipe to fit")
    ceiling = max(need, total_positions // (MIN_BATCHES * world_size))
    chosen = min(budget, ceiling)
    capped = f", capped at {ceiling} to keep {MIN_BATCHES} micro-batches an epoch" if chosen < budget else ""
    why = (f"auto: {chosen} padded positions, the plan's largest for {usable / GIB:.1f} GiB of {card} "
           f"({held}, {AUTO_HEADROOM:.0%} headroom){capped}")
    return BudgetChoice(chosen, why, card, usable)


def resolve_budget(spec: RunSpec, run_dir: Path, device: torch.device, lengths: list[int], pad_multiple: int,
                   world_size: int) -> BudgetChoice | None:
    """What "auto" is for this run: the first launch's choice if one was recorded, else sized now; None when
    the spec names a number (or no budget) itself."""
    if spec.train.frame_budget != "auto":
        return None
    kept = read_choice(run_dir)
    if kept is not None:
        here = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
        moved = "" if here == kept.device else f"; this launch is on {here}, and the budget stays the first launch's"
        return msgspec.structs.replace(kept, kept=True, why=kept.why + moved)
    if device.type != "cuda":
        return BudgetChoice(None, f"auto: no GPU to size a budget for on {device.type}; "
                                  f"{spec.train.batch_size} rows a micro-batch", device.type)
    return _size(spec, device, max(lengths), sum(lengths), pad_multiple, world_size)


def smallest(choice: BudgetChoice, budgets: list[int]) -> BudgetChoice:
    """Every process trains the same batches: the budget is the least any of them sized."""
    least = min(budgets)
    if choice.frame_budget is None or least >= choice.frame_budget:
        return choice
    return msgspec.structs.replace(choice, frame_budget=least, why=f"{choice.why}; {least} on the process with least")


def record_choice(run_dir: Path, choice: BudgetChoice) -> None:
    """Written once, before the first step: every later launch of the run reads it back."""
    atomic_write_bytes(run_dir / BUDGET_FILE, msgspec.json.encode(msgspec.structs.replace(choice, kept=False)))


def batching_text(choice: BudgetChoice) -> str:
    if choice.kept:
        return f"{choice.why}; kept from the run's first launch"
    return choice.why


def pin_budget(spec: RunSpec, choice: BudgetChoice) -> RunSpec:
    """The spec as the session and its checkpoints record it: the number, not "auto"."""
    return msgspec.structs.replace(spec, train=msgspec.structs.replace(spec.train, frame_budget=choice.frame_budget))
