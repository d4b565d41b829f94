"""The plan as an operator reads it: one line per part, the peak, and what fits the card."""

from __future__ import annotations

from qwen_train.plan.for_spec import frames_budget
from qwen_train.plan.memory import ADAPTER_NOTES, GIB, RECIPES, MemoryPlan


def _gib(value: float) -> str:
    return f"{value / GIB:6.2f} GiB"


def plan_text(plan: MemoryPlan) -> str:
    note = ADAPTER_NOTES[plan.recipe] if plan.mode == "lora" else RECIPES[plan.recipe].note
    trained = (f"a LoRA adapter of {plan.trainable_params / 1e6:.2f} M trained" if plan.mode == "lora"
               else f"{plan.trainable_params / 1e9:.3f} B trained")
    lines = [f"recipe {plan.recipe}: {note}",
             f"parameters {plan.params.total / 1e9:.3f} B ({trained})",
             f"micro-batch {plan.frames} codec frames ({plan.per_frame_bytes / 2**20:.2f} MiB of activations each)",
             ""]
    lines += [f"  {name:<12} {_gib(value)}" for name, value in plan.parts.items()]
    lines.append(f"  {'peak':<12} {_gib(plan.peak_bytes)}  (weights + optimizer + the larger of gradients and "
                 "activations + workspace + context)")
    if plan.gpu_bytes is not None:
        usable = plan.gpu_bytes * (1 - plan.headroom)
        verdict = "fits" if plan.fits else "does NOT fit"
        lines += ["", f"on {plan.gpu_bytes / GIB:.1f} GiB with {plan.headroom:.0%} headroom ({usable / GIB:.1f} GiB "
                  f"usable): {verdict}; the largest micro-batch that fits is {plan.max_frames} codec frames"]
        if plan.max_frames:
            lines.append(f"  as a budget: train.frame_budget {frames_budget(plan.max_frames)} padded positions; "
                         '"auto" sizes it at launch, less what the card\'s other tenants then hold')
        if plan.max_frames == 0:
            lines.append("  not even one frame fits: choose the lean recipe, freeze the text embedding, "
                         "or a larger card")
    return "\n".join(lines)
