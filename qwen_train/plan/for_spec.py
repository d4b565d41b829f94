"""A run spec's memory plan: its recipe and its largest micro-batch, read from its own files (no torch).

The peak of a run is reached at its longest micro-batch, so without a frame
budget the plan takes `batch_size` rows of the bundle's longest training row
(padding makes every row of a batch that long); with one, the budget itself.
The recipe is the spec's; "auto" resolves as the trainer resolves it, by the
card's size, so the daemon and the trainer agree on what will run.
"""

from __future__ import annotations

from pathlib import Path

from qwen_train.bundle.manifest import BundleError, read_manifest
from qwen_train.plan.memory import DEFAULT_HEADROOM, GIB, TEXT_TOKENS_PER_FRAME, MemoryPlan, plan_memory, read_config
from qwen_train.spec import RunSpec

LEAN_BELOW_BYTES = 40 * GIB  # cards under ~40 GiB train the lean recipe by default (DESIGN §3)
# An adapter run takes lean on any bf16 GPU: its adapters and their moments are fp32 under either recipe, so
# fp32-master only adds an fp32 copy of the frozen base and autocast's bf16 copies of it (6.7 GiB at full size,
# the same frames/s: bench/RESULTS.md, "LoRA against the full fine-tune").
ADAPTER_AUTO_WHY = "auto: an adapter run, whose fp32 adapters gain nothing from an fp32 frozen base"


def resolve_recipe(spec: RunSpec, gpu_bytes: int | None) -> str:
    """The spec's recipe, "auto" made concrete for a card of `gpu_bytes` (None: no GPU, fp32 master on CPU)."""
    chosen = spec.train.recipe
    if chosen != "auto":
        return chosen
    if gpu_bytes is None or spec.train.precision == "fp32":  # no bf16 autocast, so no lean
        return "fp32-master"
    if spec.train.adapter is not None:
        return "lean"
    return "lean" if gpu_bytes < LEAN_BELOW_BYTES else "fp32-master"


def longest_frames(bundle: Path) -> int:
    """Codec frames of the bundle's longest training row; ValueError naming the bundle when unreadable."""
    try:
        rows = [row for row in read_manifest(bundle) if row.split == "train"]
    except (BundleError, OSError) as exc:
        raise ValueError(f"bundle {bundle}: cannot read its manifest for the plan ({exc})") from None
    if not rows:
        raise ValueError(f"bundle {bundle} has no training rows: nothing to plan")
    return max(row.frames for row in rows)


def budget_frames(budget: int) -> int:
    """Codec frames in a frame budget: it counts padded talker positions, text included, so its frames are the
    budget less the text's share (the plan's per-frame cost carries that share)."""
    return max(1, int(budget / (1.0 + TEXT_TOKENS_PER_FRAME)))


def frames_budget(frames: int) -> int:
    """The frame budget (padded talker positions) whose micro-batches hold `frames` codec frames."""
    return int(frames * (1.0 + TEXT_TOKENS_PER_FRAME))


def micro_batch_frames(spec: RunSpec) -> int:
    """Codec frames of the run's largest micro-batch. An "auto" budget is planned at its least, one longest row:
    the budget the run takes is the largest the card then has room for (train/device/auto_budget.py)."""
    budget = spec.train.frame_budget
    if isinstance(budget, int):
        return budget_frames(budget)
    if budget == "auto":
        return longest_frames(Path(spec.bundle))
    return spec.train.batch_size * longest_frames(Path(spec.bundle))


def plan_for_spec(spec: RunSpec, gpu_bytes: int | None = None, headroom: float = DEFAULT_HEADROOM,
                  frames: int | None = None, recipe: str | None = None) -> MemoryPlan:
    """The run's plan; `frames`/`recipe` override what the spec and its bundle say."""
    return plan_memory(read_config(Path(spec.model)), recipe or resolve_recipe(spec, gpu_bytes),
                       frames or micro_batch_frames(spec),
                       freeze_text_embedding=spec.train.freeze_text_embedding,
                       gpu_bytes=gpu_bytes, headroom=headroom, grad_accum=spec.train.grad_accum,
                       adapter=spec.train.adapter, language_row=spec.language is not None)
