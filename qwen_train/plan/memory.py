"""The memory plan: a run's predicted GPU peak by part, and the largest micro-batch that fits a card.

Hemma's card has 32 GB shared with other services, so "will it fit?" must be
answered before a run starts, by the operator (`qwen-train plan`) and by the
daemon's admission check alike; both call `plan_memory` (no torch). The peak is

    weights + optimizer state                      (bytes per parameter, by recipe, trainable or frozen)
  + max(gradients, activations)                    (activations per codec frame x frames per micro-batch;
                                                    their sum when gradients accumulate over micro-batches)
  + workspace                                      (library workspaces and allocator slack)
  + context                                        (the CUDA/HIP context, outside torch's allocator)

Gradients and activations do not add up: the backward frees each layer's
saved activations as it writes that layer's gradients, so the peak is the
larger of the two (measured: the intercept of the peak over the frame budget
is weights + optimizer state, not weights + gradients + optimizer state).
With `grad_accum` > 1 the gradients of earlier micro-batches are held while
the next one's activations are, and the two add. Under fp32 master with bf16
autocast, autocast keeps a bf16 copy of every weight it casts for the step
(2 bytes a parameter), counted with the weights.

An adapter run (train.adapter) keeps the whole base frozen (4 bytes a parameter
under fp32 master, where autocast caches no bf16 copy of a weight that takes no
gradient, 2 under lean) and trains only the adapter, fp32 under either recipe
(weights with autocast's copy, gradients, AdamW moments: 18 bytes a parameter).
Its activations are the full fine-tune's (a frozen layer still passes gradients
through, so it keeps what its backward needs) plus each adapted projection's
rank-wide intermediate and, with dropout, its own dropped copy of the input and
the mask.

Activations per frame are counted from the architecture: what autograd keeps
per position in each talker layer (the residual stream, the normed inputs,
q/k/v, the attention output, the SwiGLU's gate, up and product), the code
predictor's own sequence of code groups for each frame, and the float32 logits
of both heads with their gradients. `ACTIVATION_FACTOR` turns that count into
what the allocator really holds; it and WORKSPACE_BYTES are fitted on peaks
measured by bench/plan_check.py (full 1.7B, lean recipe, compiled layers, an
H200 under a 32 GiB cap, budgets 1,500/3,000/4,500 positions: 16.95/24.10/
30.31 GiB allocated) and checked there at other budgets and recipes
(bench/RESULTS.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from qwen_train.plan.params import ParamCounts, adapted_layers, adapter_params, count_params, projections
from qwen_train.safe_read import decode_json, read_regular
from qwen_train.spec import Adapter

Recipe = Literal["fp32-master", "lean", "upstream"]
GIB = 2**30
# Text tokens per codec frame in the talker's sequence: Swedish speech runs ~15 characters/s, ~4 tokens/s,
# against 12.5 codec frames/s; plus the handful of control tokens per row, negligible at real lengths.
TEXT_TOKENS_PER_FRAME = 0.35
ACTIVATION_FACTOR = 0.81
WORKSPACE_BYTES = int(0.35 * GIB)
CONTEXT_BYTES = int(0.75 * GIB)  # measured: NVML's count for the process less torch's reserved pool
DEFAULT_HEADROOM = 0.10
MAX_CONFIG_BYTES = 1 << 20


class RecipeBytes(msgspec.Struct, frozen=True):
    """Bytes per parameter a recipe keeps on the GPU: weights (all, autocast's bf16 copies included), gradients
    and optimizer state (trainable)."""

    weights: int
    gradients: int
    optimizer: int
    activation_bytes: int  # of one saved activation element
    note: str


RECIPES: dict[str, RecipeBytes] = {
    "fp32-master": RecipeBytes(4 + 2, 4, 8, 2, "fp32 weights, gradients and AdamW moments; bf16 autocast"),
    "lean": RecipeBytes(2, 2, 4, 2, "bf16 weights and gradients; bf16 AdamW moments with stochastic rounding"),
    "upstream": RecipeBytes(2, 2, 4, 2, "the upstream recipe: a bf16 model under plain AdamW"),
}

ADAPTER_FROZEN_BYTES = {"fp32-master": 4, "lean": 2}  # an adapter run's frozen base, a parameter
# Under fp32-master autocast casts each frozen matmul weight to bf16 in the forward, and autograd keeps that copy
# for the backward (the input's gradient needs it): 2 bytes more a parameter of every projection, the frozen
# embeddings and the no-grad speaker encoder excepted (measured on the H200: 24.5 GiB peak, where 4 bytes alone
# planned 20.6).
ADAPTER_CAST_BYTES = {"fp32-master": 2, "lean": 0}
ADAPTER_TRAINED = RecipeBytes(4 + 2, 4, 8, 2, "fp32 LoRA adapters, gradients and AdamW moments")
ADAPTER_NOTES = {"fp32-master": "fp32 frozen base (bf16 autocast copies kept for the backward), fp32 LoRA "
                                "adapters, gradients and AdamW moments",
                 "lean": "bf16 frozen base, fp32 LoRA adapters, gradients and AdamW moments"}


class MemoryPlan(msgspec.Struct, frozen=True):
    """Bytes by part at `frames` codec frames per micro-batch; `max_frames`: the most that fit `gpu_bytes`.

    `peak_bytes` is what the card must have free (the context included); `allocated_bytes` what torch's
    allocator will report as its peak (`torch.cuda.max_memory_allocated`), the figure the bench checks.
    """

    recipe: str
    frames: int
    parts: dict[str, int]
    peak_bytes: int
    allocated_bytes: int
    per_frame_bytes: int
    fixed_bytes: int
    params: ParamCounts
    trainable_params: int
    gpu_bytes: int | None = None
    headroom: float = DEFAULT_HEADROOM
    max_frames: int | None = None
    fits: bool | None = None
    mode: str = "full"  # "lora": an adapter run (train.adapter), whose trainable_params are the adapter's


def _decoder_saved(c: Mapping[str, Any]) -> int:
    """Elements autograd keeps per position in one decoder layer."""
    hidden, heads, kv = int(c["hidden_size"]), int(c["num_attention_heads"]), int(c["num_key_value_heads"])
    head_dim = int(c.get("head_dim") or hidden // heads)
    attention = 2 * hidden + heads * head_dim + 2 * kv * head_dim + 2 * heads * head_dim  # norm in/out, q k v, out
    mlp = 2 * hidden + 4 * int(c["intermediate_size"])  # norm in/out, gate, up, act(gate), product
    return attention + mlp


def activation_bytes_per_frame(config: Mapping[str, Any], element_bytes: int) -> int:
    """What one codec frame of a micro-batch costs in activations (with its share of text positions)."""
    talker = config["talker_config"]
    predictor = talker["code_predictor_config"]
    positions = 1.0 + TEXT_TOKENS_PER_FRAME
    talker_saved = positions * int(talker["num_hidden_layers"]) * _decoder_saved(talker) * element_bytes
    groups = int(predictor["num_code_groups"])
    predictor_saved = (groups + 1) * int(predictor["num_hidden_layers"]) * _decoder_saved(predictor) * element_bytes
    logits = 3 * 4 * (positions * int(talker["vocab_size"]) + (groups - 1) * int(predictor["vocab_size"]))
    return int(ACTIVATION_FACTOR * (talker_saved + predictor_saved + logits))


def adapter_activation_bytes_per_frame(config: Mapping[str, Any], adapter: Adapter, element_bytes: int) -> int:
    """What an adapter adds to a codec frame's activations: each adapted projection's rank-wide intermediate,
    and with dropout its dropped input (and the one-byte mask) per position."""
    talker = config["talker_config"]
    positions = {id(talker): 1.0 + TEXT_TOKENS_PER_FRAME,
                 id(talker["code_predictor_config"]): int(talker["code_predictor_config"]["num_code_groups"]) + 1.0}
    total = 0.0
    for layer in adapted_layers(config, adapter.code_predictor):
        shapes = projections(layer)
        per_position = 0
        for name in adapter.target_modules:
            if name in shapes:
                per_position += adapter.rank * element_bytes
                per_position += shapes[name][0] * (element_bytes + 1) if adapter.dropout > 0 else 0
        total += positions[id(layer)] * per_position
    return int(ACTIVATION_FACTOR * total)


def _state_parts(params: ParamCounts, trained: int, recipe: str, adapter: bool) -> dict[str, int]:
    """Weights, gradients and optimizer state on the GPU, `trained` of the parameters training."""
    per = ADAPTER_TRAINED if adapter else RECIPES[recipe]
    weights = params.total * per.weights
    if adapter:
        projections = params.total - params.text_embedding - params.speaker_encoder
        weights = params.total * ADAPTER_FROZEN_BYTES[recipe] + projections * ADAPTER_CAST_BYTES[recipe] + \
            trained * per.weights
    return {"weights": weights, "gradients": trained * per.gradients, "optimizer": trained * per.optimizer}


def read_config(model_dir: Path) -> dict[str, Any]:
    """The model dir's config.json; ValueError naming the file when it is missing or not JSON."""
    path = Path(model_dir) / "config.json"
    try:  # the daemon reads it at admission: never block on a FIFO, never read more than a config's worth
        config = decode_json(read_regular(path, MAX_CONFIG_BYTES, what="model config"), dict, str(path))
    except FileNotFoundError:
        raise ValueError(f"{path}: no model config here: point spec.model at a model dir") from None
    except ValueError as exc:
        raise ValueError(f"{exc}: point spec.model at a model dir") from None
    if not isinstance(config, dict) or "talker_config" not in config:
        raise ValueError(f"{path}: not a Qwen3-TTS config (no talker_config)")
    return config


def plan_memory(config: Mapping[str, Any], recipe: str, frames: int, *, freeze_text_embedding: bool = False,
                gpu_bytes: int | None = None, headroom: float = DEFAULT_HEADROOM, grad_accum: int = 1,
                adapter: Adapter | None = None, language_row: bool = False) -> MemoryPlan:
    """The plan for `frames` codec frames per micro-batch; with `gpu_bytes`, the largest budget that fits.

    `adapter`: an adapter run's (with `language_row` when it trains a language tag's row)."""
    if recipe not in RECIPES or (adapter is not None and recipe not in ADAPTER_FROZEN_BYTES):
        raise ValueError(f"unknown recipe {recipe!r}{' for an adapter run' if adapter else ''}: one of "
                         f"{sorted(ADAPTER_FROZEN_BYTES if adapter else RECIPES)}")
    if frames < 1:
        raise ValueError(f"frames per micro-batch must be at least 1, got {frames}")
    per = RECIPES[recipe]
    params = count_params(config)
    per_frame = activation_bytes_per_frame(config, per.activation_bytes)
    if adapter is None:
        trainable = params.total - params.speaker_encoder - (params.text_embedding if freeze_text_embedding else 0)
    else:
        trainable = adapter_params(config, adapter.rank, adapter.target_modules, adapter.code_predictor,
                                   language_row)
        per_frame += adapter_activation_bytes_per_frame(config, adapter, per.activation_bytes)
    parts = {
        **_state_parts(params, trainable, recipe, adapter is not None),
        "activations": per_frame * frames,
        "workspace": WORKSPACE_BYTES,
        "context": CONTEXT_BYTES,
    }
    accumulates = grad_accum > 1
    fixed = parts["weights"] + parts["optimizer"] + parts["workspace"] + parts["context"]
    fixed += parts["gradients"] if accumulates else 0
    peak = fixed + (parts["activations"] if accumulates else max(parts["gradients"], parts["activations"]))
    max_frames = fits = None
    if gpu_bytes is not None:
        usable = gpu_bytes * (1.0 - headroom) - fixed
        enough = usable >= (0 if accumulates else parts["gradients"])
        max_frames = max(0, math.floor(usable / per_frame)) if enough else 0
        fits = peak <= gpu_bytes * (1.0 - headroom)
    return MemoryPlan(recipe=recipe, frames=frames, parts=parts, peak_bytes=peak,
                      allocated_bytes=peak - CONTEXT_BYTES, per_frame_bytes=per_frame, fixed_bytes=fixed,
                      params=params, trainable_params=trainable, gpu_bytes=gpu_bytes, headroom=headroom,
                      max_frames=max_frames, fits=fits, mode="full" if adapter is None else "lora")


def parse_size(text: str) -> int:
    """'32GiB', '32G', '24 GB', '1500MiB' or bytes -> bytes (G and GB read as GiB: cards are sold that way)."""
    units = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20, "mib": 2**20,
             "g": GIB, "gb": GIB, "gib": GIB, "t": 2**40, "tb": 2**40, "tib": 2**40}
    value = text.strip().lower().replace(" ", "")
    number = value.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = value[len(number):]
    try:
        amount = float(number)
    except ValueError:
        raise ValueError(f"size {text!r}: expected a number and a unit, e.g. 32GiB") from None
    if unit not in units or amount <= 0:
        raise ValueError(f"size {text!r}: expected a positive number and a unit (B, KiB, MiB, GiB, TiB)")
    return int(amount * units[unit])
