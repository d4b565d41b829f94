"""The training recipe: in which dtypes the weights, gradients and optimizer state live.

Two recipes, chosen by `train.recipe` in the spec:

* `fp32-master`: fp32 weights, gradients and AdamW moments (16 bytes a
  trainable parameter); bf16 autocast on a bf16 GPU, plain fp32 on a CPU.
  The reference: CPU runs of it are what the exact-resume and alignment
  tests compare.
* `lean`: bf16 weights and gradients, bf16 AdamW moments written with
  stochastic rounding (lean_adamw.py), bf16 autocast (8 bytes a trainable
  parameter). Buffers (the rotary frequencies) stay fp32: they are not
  trained and lose position accuracy in bf16.

`auto` (the default) is `lean` on a GPU with less than `LEAN_BELOW_BYTES` of
memory (a 32 GB card, where fp32 master does not fit without recomputing
activations) and for an adapter run on any bf16 GPU (plan/for_spec.py says
why), and `fp32-master` otherwise and on a CPU; an explicit
`precision: "fp32"` keeps fp32 master, since lean computes in bf16. The
memory counted is the device's total times any per-process cap set on it
(`torch.cuda.set_per_process_memory_fraction`, as the benchmarks emulate a
32 GB card on a larger one).

`train.freeze_text_embedding` freezes `talker.model.text_embedding` (311 M of
the full model's parameters) under either recipe: no gradient and no
optimizer state for it. The text projection after it still trains.

An adapter run (`train.adapter`, adapter.py) keeps its LoRA adapters and their
AdamW moments fp32 under either recipe; the recipe then sets the frozen base's
dtype only (fp32, or bf16 under lean).

The resolved recipe is pinned into the spec the session (and so every
checkpoint) records, so a diagnose replay rebuilds the same recipe, and a
resume that would resolve to another one is refused before anything is
restored (`recipe_mismatch`), naming the spec change that continues it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import msgspec
import torch

from qwen_train.plan.for_spec import ADAPTER_AUTO_WHY, LEAN_BELOW_BYTES  # one rule for the trainer and the plan
from qwen_train.plan.memory import ADAPTER_NOTES, GIB  # an adapter run's adapters stay fp32 (adapter.py)
from qwen_train.spec import RunSpec, TrainConfig

Resolved = Literal["fp32-master", "lean"]
TEXT_EMBEDDING = "talker.model.text_embedding"

NOTES: dict[str, str] = {
    "fp32-master": "fp32 weights, gradients and AdamW moments",
    "lean": "bf16 weights and gradients, bf16 AdamW moments with stochastic rounding",
}



@dataclass(frozen=True)
class Recipe:
    """The recipe a run trains with, and why it is that one (for status, events and the log)."""

    name: Resolved
    why: str

    def describe(self, mixed_precision: str, freeze_text_embedding: bool, adapter: bool = False) -> str:
        compute = "bf16 autocast" if mixed_precision == "bf16" else "fp32 compute"
        frozen = "; text embedding frozen" if freeze_text_embedding and not adapter else ""
        note = ADAPTER_NOTES[self.name] if adapter else NOTES[self.name]
        return f"recipe {self.name}: {note}, {compute}{frozen} ({self.why})"


def device_memory(device: torch.device) -> int | None:
    """The GPU memory this process may use: the device's total, under any per-process cap; None off a GPU."""
    if device.type != "cuda":
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    total = int(torch.cuda.get_device_properties(index).total_memory)
    return int(total * torch.cuda.get_per_process_memory_fraction(index))


def forces_bf16(train: TrainConfig) -> bool:
    """An explicit lean recipe computes under bf16 autocast whatever `precision: auto` would pick."""
    return train.recipe == "lean" and train.precision == "auto"


def resolve_recipe(train: TrainConfig, device: torch.device, mixed_precision: str) -> Recipe:
    """`train.recipe` made concrete for this device and the autocast the accelerator was built with."""
    if train.recipe == "lean":
        if mixed_precision != "bf16":
            raise ValueError("train.recipe 'lean' computes under bf16 autocast; train.precision "
                             f"{train.precision!r} does not allow it: set precision to 'auto' or 'bf16'")
        return Recipe("lean", "asked in the spec")
    if train.recipe == "fp32-master":
        return Recipe("fp32-master", "asked in the spec")
    if device.type != "cuda":
        return Recipe("fp32-master", f"auto: fp32 master on {device.type}")
    if mixed_precision != "bf16":
        return Recipe("fp32-master", "auto: no bf16 autocast here (train.precision or the GPU), so fp32 master")
    if train.adapter is not None:
        return Recipe("lean", ADAPTER_AUTO_WHY)
    memory = device_memory(device)
    assert memory is not None
    if memory < LEAN_BELOW_BYTES:
        return Recipe("lean", f"auto: {memory / GIB:.1f} GiB of GPU memory, under {LEAN_BELOW_BYTES // GIB} GiB")
    return Recipe("fp32-master", f"auto: {memory / GIB:.1f} GiB of GPU memory, {LEAN_BELOW_BYTES // GIB} GiB or more")


def pin_recipe(spec: RunSpec, recipe: Recipe) -> RunSpec:
    """The spec with `auto` replaced by what it resolved to, as the session and its checkpoints record it."""
    return msgspec.structs.replace(spec, train=msgspec.structs.replace(spec.train, recipe=recipe.name))


def apply_recipe(model: torch.nn.Module, recipe: Recipe, freeze_text_embedding: bool, adapter: bool = False) -> None:
    """Freeze the text embedding if asked; under lean, make every parameter bf16 (buffers stay as they are),
    but for an adapter run only the frozen ones: its adapters stay fp32."""
    if freeze_text_embedding:
        model.get_submodule(TEXT_EMBEDDING).requires_grad_(False)
    if recipe.name == "lean":
        for param in model.parameters():
            if not (adapter and param.requires_grad):
                param.data = param.data.to(torch.bfloat16)


@contextlib.contextmanager
def fp32_weights(model: torch.nn.Module) -> Iterator[None]:
    """Every parameter fp32 for the duration, e.g. for the diagnosis's fp32 replay of a lean model.

    bf16 -> fp32 -> bf16 is exact, so the weights afterwards are bit for bit the ones before; the bf16
    copies are dropped meanwhile, so this costs the fp32 weights' memory, not both.
    """
    changed = [(p, p.dtype) for p in model.parameters() if p.dtype != torch.float32]
    for param, _dtype in changed:
        param.data = param.data.float()
    try:
        yield
    finally:
        for param, dtype in changed:
            param.data = param.data.to(dtype)


def recorded_recipe(spec_json: str) -> str:
    """The recipe a checkpoint's recorded spec names; checkpoints from before recipes were fp32 master."""
    train = json.loads(spec_json).get("train", {})
    recipe = str(train.get("recipe", "auto"))
    return "fp32-master" if recipe == "auto" else recipe


def recipe_mismatch(checkpoint: str, spec_json: str, live: RunSpec) -> str | None:
    """Why a checkpoint trained under one recipe cannot continue under this run's, or None if they agree."""
    recorded, now = recorded_recipe(spec_json), live.train.recipe
    if recorded == now:
        return None
    return (f"{checkpoint} was trained with recipe {recorded!r} and this run resolves train.recipe to {now!r}: its "
            f"weights and optimizer state are kept in other dtypes; set train.recipe to {recorded!r} in the spec "
            "to continue it")
