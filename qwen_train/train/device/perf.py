"""Speed settings: what the trainer does to be fast on a GPU, and nothing on a CPU.

Every switch here changes *how* the same step is computed, never *what* is
trained: the objective, the alignment, the guard and the precision policy are
the spec's. The defaults depend on the device: on CUDA all of them are on
(except activation checkpointing, which only pays when it buys a batch size),
on a CPU all are off, so CPU runs (the tests, exact resume) compute exactly
what they always did. `QWEN_TRAIN_PERF` (a JSON object of these fields)
overrides the defaults, e.g. to turn compilation off on a GPU where it fails,
or to exercise background checkpointing on a CPU in a test.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any

import msgspec
import torch

from qwen_train.train.device.compiling import compile_regions

PERF_ENV = "QWEN_TRAIN_PERF"


@dataclass(frozen=True)
class Perf:
    """How the step is made fast. See the module docstring for the defaults."""

    fused_optimizer: bool = False  # one fused AdamW kernel instead of per-tensor loops
    compile_layers: bool = False  # torch.compile each decoder layer (regional: one compile per layer type)
    compile_speaker: bool = False  # torch.compile the frozen speaker encoder (measured: costlier per call, off)
    speaker_cache: bool = False  # one encoder call per reference per run (objective.SpeakerCache)
    activation_checkpointing: bool = False  # recompute layer activations in backward: memory for batch size
    bucket: int = 0  # sort rows by length within windows of this many global batches (0: off)
    # Pad each batch's length up to a multiple of this (0: to its longest row). Inductor specialises a
    # compiled layer on whether the length is a multiple of 8, so unaligned lengths compile it again.
    pad_multiple: int = 0
    prefetch: int = 0  # batches prepared ahead by worker processes (0: in the step, as before)
    workers: int = 2  # worker processes for prefetching
    async_checkpoint: bool = False  # snapshot to (pinned) host memory, write + fsync + rename in a thread
    # Let SDPA pick cuDNN's attention on NVIDIA. Off on CUDA: cuDNN builds an execution plan for every new
    # (rows, length) shape, and a frame budget makes nearly every micro-batch a new shape; measured on the
    # H200 at budget 1,600 it cost 0.7 s of a 1.5 s lean step until the plans were cached, where torch's
    # flash kernel has no plans to build. ROCm has no cuDNN: there the switch does nothing.
    cudnn_attention: bool = True

    @classmethod
    def for_device(cls, device: torch.device) -> Perf:
        if device.type == "cuda":
            return cls(fused_optimizer=True, compile_layers=True, speaker_cache=True, bucket=16, pad_multiple=8,
                       prefetch=8, cudnn_attention=False,
                       workers=4, async_checkpoint=True)
        return cls()

    @classmethod
    def resolve(cls, device: torch.device, overrides: dict[str, Any] | None = None) -> Perf:
        """The device's defaults, then `QWEN_TRAIN_PERF`, then explicit overrides."""
        perf = cls.for_device(device)
        raw = os.environ.get(PERF_ENV)
        if raw:
            try:
                env = msgspec.json.decode(raw)
            except msgspec.DecodeError as exc:
                raise ValueError(f"{PERF_ENV} is not JSON: {exc}") from None
            perf = perf.with_fields(env, PERF_ENV)
        if overrides:
            perf = perf.with_fields(overrides, "overrides")
        return perf

    def with_fields(self, values: Any, source: str) -> Perf:
        known = {f.name: f.type for f in fields(self)}
        if not isinstance(values, dict) or not set(values) <= set(known):
            raise ValueError(f"{source}: expected an object with fields among {sorted(known)}, got {values!r}")
        return replace(self, **values)


def make_optimizer(params: list[torch.nn.Parameter], lr: float, weight_decay: float, perf: Perf,
                   device: torch.device) -> torch.optim.AdamW:
    """AdamW; fused on CUDA when asked (same update rule, one kernel for all tensors)."""
    fused = perf.fused_optimizer and device.type == "cuda"
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


def speed_up_model(model: Any, perf: Perf) -> None:
    """Apply the model-side switches in place (compilation, activation checkpointing, the attention kernel).

    Compilation is regional: every decoder layer of the talker and of the code
    predictor is compiled on its own, with dynamic shapes, so one compile per
    layer type covers every sequence length and batch size, and the 28 + 5
    layers share it. The Python around the layers stays eager, which keeps the
    fault injector's hooks and the diagnosis working unchanged. The backend is
    compiling.compile_backend()'s, which doctor probes too; a failure shows at
    the first call, where fallback.py turns the run eager (or here, when
    compilation cannot even be set up: compiling.compile_regions).
    """
    if torch.cuda.is_available():
        torch.backends.cuda.enable_cudnn_sdp(perf.cudnn_attention)
    if perf.activation_checkpointing:
        model.talker.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    regions: list[torch.nn.Module] = []
    if perf.compile_layers:
        regions += [*model.talker.model.layers, *model.talker.code_predictor.model.layers]
    if perf.compile_speaker and model.speaker_encoder is not None:
        regions.append(model.speaker_encoder)
    if regions:
        compile_regions(regions)
