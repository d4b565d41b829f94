"""Localise a non-finite step: which loss part, which module broke first, and does fp32 fix it.

The offending batch is replayed with a forward hook on every module. Hooks
fire children-first, so the first module whose output is non-finite while
all its inputs were finite is where the fault entered (for example
`talker.model.layers.1.mlp`). The backward pass is replayed under anomaly
detection with a gradient hook on every module output, naming the first
module whose output gradient went non-finite. Finally the forward runs again
without autocast, in fp32 (under the lean recipe with its bf16 weights made
fp32 for the replay, exactly, and put back after): a fault that vanishes there
is a reduced-precision effect, of the autocast or of the recipe's bf16 weights.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from qwen_train.status import Diagnosis, ModuleFinding
from qwen_train.train.objective import forward_losses, speaker_embeddings
from qwen_train.train.recipes.recipe import fp32_weights

if TYPE_CHECKING:
    from qwen_train.train.session import Session

PARTS = ("total", "talker", "code_predictor")


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item)


def _finite(tensors: list[torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def _absmax(tensors: list[torch.Tensor]) -> str:
    values = [float(t.detach().abs().float().max()) for t in tensors if t.numel()]
    return repr(max(values)) if values else "-"


@dataclass
class Probe:
    """Forward and gradient observations, in the order they happened."""

    forward: ModuleFinding | None = None
    backward: ModuleFinding | None = None
    handles: list[Any] = field(default_factory=list)

    def attach(self, model: torch.nn.Module) -> None:
        for name, module in model.named_modules():
            if name:
                self.handles.append(module.register_forward_hook(self._forward_hook(name), with_kwargs=True))

    def detach(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def _forward_hook(self, name: str):
        def hook(module: torch.nn.Module, args: Any, kwargs: dict[str, Any], output: Any) -> None:
            outs = list(_tensors(output))
            if self.forward is None and outs and not _finite(outs):
                ins = list(_tensors(args)) + list(_tensors({k: v for k, v in kwargs.items() if "mask" not in k}))
                if _finite(ins):
                    self.forward = ModuleFinding(name=name, dtype=str(outs[0].dtype).replace("torch.", ""),
                                                 input_absmax=_absmax(ins), output_absmax=_absmax(outs))
            if outs and outs[0].requires_grad:
                outs[0].register_hook(self._grad_hook(name, outs[0]))

        return hook

    def _grad_hook(self, name: str, output: torch.Tensor):
        def hook(grad: torch.Tensor) -> None:
            if self.backward is None and not bool(torch.isfinite(grad).all()):
                self.backward = ModuleFinding(name=name, dtype=str(grad.dtype).replace("torch.", ""),
                                              input_absmax=_absmax([output]), output_absmax=_absmax([grad]))

        return hook


def _parts(losses: Any) -> dict[str, float]:
    return {"total": float(losses.total), "talker": float(losses.talker),
            "code_predictor": float(losses.code_predictor)}


def _replay(model, batch, mels, sub_weight: float, autocast: contextlib.AbstractContextManager[Any]):
    with autocast:
        spk = speaker_embeddings(model, mels)
        return forward_losses(model, batch, spk, sub_weight)


def _anomaly_note(model, batch, mels, sub_weight: float, autocast: contextlib.AbstractContextManager[Any]) -> str:
    """A second backward under anomaly detection names the autograd op that first returned NaN."""
    losses = _replay(model, batch, mels, sub_weight, autocast)
    try:
        with torch.autograd.detect_anomaly(check_nan=True):
            losses.total.backward()
    except RuntimeError as exc:
        return "anomaly detection: " + str(exc).splitlines()[0][:300]
    return "anomaly detection: backward stayed finite"


def diagnose_batch(session: Session, batch: dict[str, torch.Tensor], mels: list[torch.Tensor], step: int,
                   grad_norm: float, problems: list[str]) -> Diagnosis:
    """Replay one offending micro-batch on the session's model (weights as they were at the bad step)."""
    model = session.model
    batch = {k: v.to(session.device) for k, v in batch.items()}
    sub_weight = session.spec.train.sub_talker_weight
    probe = Probe()
    probe.attach(model)
    try:
        losses = _replay(model, batch, mels, sub_weight, session.accelerator.autocast())
        parts = _parts(losses)
        losses.total.backward()  # gradient hooks see every module output's gradient, in backward order
    finally:
        probe.detach()
        session.optimizer.zero_grad(set_to_none=True)
    note = _anomaly_note(model, batch, mels, sub_weight, session.accelerator.autocast())
    session.optimizer.zero_grad(set_to_none=True)
    with torch.no_grad(), fp32_weights(model):
        fp32 = _parts(_replay(model, batch, mels, sub_weight, contextlib.nullcontext()))
    return _verdict(session, step, parts, fp32, grad_norm, problems, probe, note)


def _verdict(session: Session, step: int, parts: dict[str, float], fp32: dict[str, float], grad_norm: float,
             problems: list[str], probe: Probe, note: str) -> Diagnosis:
    broken = [p for p in PARTS if not math.isfinite(parts[p])]
    precision = "bf16" if session.accelerator.mixed_precision == "bf16" else "fp32"  # `auto` resolved
    recipe = session.spec.train.recipe  # pinned by the session: never "auto"
    fp32_broken = any(not math.isfinite(v) for v in fp32.values())
    reproduces = fp32_broken if broken else None
    lines = [f"step {step}: " + "; ".join(problems)]
    if broken:
        lines.append("broken loss parts: " + ", ".join(broken))
    if probe.forward:
        f = probe.forward
        lines.append(f"forward: first non-finite output at {f.name} ({f.dtype}; input absmax {f.input_absmax}, "
                     f"output absmax {f.output_absmax})")
    else:
        lines.append("forward: every module output stayed finite")
    if probe.backward:
        lines.append(f"backward: first non-finite gradient at the output of {probe.backward.name}; {note}")
    else:
        lines.append(f"backward: {note}")
    if reproduces is not None:
        lines.append("fp32 replay: the fault reproduces in fp32" if reproduces
                     else f"fp32 replay: finite in fp32; the fault appears only in {precision}")
    lines.append(f"trained with recipe {recipe}, {precision} compute")
    cursor = session.progress.last_step_cursor
    assert cursor is not None  # set by the step being diagnosed
    return Diagnosis(
        step=step, epoch=cursor.epoch, position=cursor.position,
        loss_parts={k: repr(v) for k, v in parts.items()}, grad_norm=repr(grad_norm), broken_parts=broken,
        forward=probe.forward, backward=probe.backward, backward_note=note, precision=precision,
        fp32_reproduces=reproduces, summary="\n".join(lines), created_at=time.time(), recipe=recipe,
    )


def write_diagnosis(run_dir, diagnosis: Diagnosis) -> None:
    """diagnosis.json for tools, diagnosis.txt for people; both kept with the run."""
    import msgspec

    from qwen_train.atomic import atomic_write_bytes, atomic_write_text

    atomic_write_bytes(run_dir / "diagnosis.json", msgspec.json.format(msgspec.json.encode(diagnosis), indent=2))
    atomic_write_text(run_dir / "diagnosis.txt", diagnosis.summary + "\n")
