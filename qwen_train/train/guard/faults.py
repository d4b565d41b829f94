"""Test-only switches, explicit and inert unless asked for.

`QWEN_TEST_PAUSE=point[@step]:seconds[,...]` makes the trainer sleep at a
named point (optionally only at one step) so a test can SIGKILL it there
deterministically, e.g. in the middle of a checkpoint write. `step-end` holds
it after a step's heartbeat until a stop request arrives (or the seconds pass),
so a test can stop a run at a known step however fast the machine is.

`QWEN_TEST_GPU_CAP_GIB=32` caps the process's GPU memory, as the benches emulate Hemma's
32 GB card on a larger one.

`QWEN_TEST_FAULT='{"module": "talker.model.layers.1.mlp", "step": 5, ...}'`
injects a fault at one optimizer step: NaN/Inf into the named module's output
(target "output"), or into / a scale on its weight (target "weight").
`times` is how many times the step may be hit (0 = every time, e.g. after
each rollback); `precision: "reduced"` fires only under autocast, to model a
fault that fp32 does not have. Kind "oom" raises torch.OutOfMemoryError from the
named module's forward instead, as a GPU that runs out of memory there would
(train/device/oom.py), so the out-of-memory path is tested on a CPU. Nothing here
runs unless the variable is set.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, Literal

import msgspec
import torch

PAUSE_ENV = "QWEN_TEST_PAUSE"
FAULT_ENV = "QWEN_TEST_FAULT"
CAP_ENV = "QWEN_TEST_GPU_CAP_GIB"  # the benches' emulation of a smaller card: a per-process memory cap


def cap_gpu(device: torch.device) -> None:
    """With QWEN_TEST_GPU_CAP_GIB set, cap this process's share of the GPU at that many GiB, as a 32 GB card
    is emulated on the accelerator machine; the recipe, the plan and "auto" budgets then see the smaller card."""
    raw = os.environ.get(CAP_ENV)
    if not raw or device.type != "cuda":
        return
    index = device.index if device.index is not None else torch.cuda.current_device()
    total = torch.cuda.get_device_properties(index).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, float(raw) * 2**30 / total), index)


def _pauses() -> dict[str, float]:
    raw = os.environ.get(PAUSE_ENV, "")
    out: dict[str, float] = {}
    for item in filter(None, raw.split(",")):
        point, _, seconds = item.partition(":")
        out[point.strip()] = float(seconds or 0)
    return out


def pause(point: str, step: int, until: Callable[[], bool] | None = None) -> None:
    """Sleep at `point` for the seconds the variable gives; `until` ends it early (a stop request), so a test
    can hold the trainer at a known step until it has signalled it, whatever the machine's speed."""
    pauses = _pauses()
    seconds = pauses.get(f"{point}@{step}", pauses.get(point))
    if not seconds:
        return
    print(f"qwen-train: test pause at {point} for {seconds}s", file=sys.stderr, flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (until is not None and until()):
        time.sleep(min(0.05, max(deadline - time.monotonic(), 0.0)))


class FaultSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    module: str
    step: int
    kind: Literal["nan", "inf", "scale", "oom"] = "nan"
    target: Literal["output", "weight"] = "output"
    times: int = 1
    factor: float = 1e30
    precision: Literal["any", "reduced"] = "any"


def _poison(t: torch.Tensor, spec: FaultSpec) -> torch.Tensor:
    """Poisoned, but still attached to the graph, as a real overflow is: the module's parameters still
    get (non-finite) gradients. A detached replacement would leave them without any, which a real fault
    never does, and which DDP takes for a backward that never finished."""
    if spec.kind == "scale":
        return t * spec.factor
    return t + torch.full_like(t, float("nan") if spec.kind == "nan" else float("inf"))


class FaultInjector:
    """Arms at the fault's step (at most `times` times); while armed, poisons the module."""

    def __init__(self, spec: FaultSpec, model: torch.nn.Module) -> None:
        modules = dict(model.named_modules())
        if spec.module not in modules:
            raise ValueError(f"{FAULT_ENV}: no module named {spec.module!r} in the model")
        self.spec = spec
        self.module = modules[spec.module]
        self.armed = False
        self.hits = 0
        self.module.register_forward_hook(self._hook)

    def begin_step(self, step: int) -> None:
        """Called before optimizer step `step` (1-based) is computed."""
        self.armed = False
        if step != self.spec.step or (self.spec.times and self.hits >= self.spec.times):
            return
        self.armed = True
        self.hits += 1
        print(f"qwen-train: TEST FAULT armed at step {step}: {self.spec}", file=sys.stderr, flush=True)
        if self.spec.target == "weight" and self.spec.kind != "oom":
            with torch.no_grad():
                weight = self.module.weight
                weight.copy_(_poison(weight, self.spec))

    def _hook(self, module: torch.nn.Module, args: Any, output: Any) -> Any:
        if self.armed and self.spec.kind == "oom":
            raise torch.OutOfMemoryError(f"test fault: out of memory in the forward of {self.spec.module}")
        if not self.armed or self.spec.target != "output":
            return None
        if self.spec.precision == "reduced" and not torch.is_autocast_enabled(_device_type(output)):
            return None
        if isinstance(output, torch.Tensor):
            return _poison(output, self.spec)
        if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
            return (_poison(output[0], self.spec), *output[1:])
        return None


def _device_type(output: Any) -> str:
    tensor = output if isinstance(output, torch.Tensor) else output[0]
    return str(tensor.device.type)


def install_fault(model: torch.nn.Module) -> FaultInjector | None:
    raw = os.environ.get(FAULT_ENV)
    if not raw:
        return None
    try:
        spec = msgspec.json.decode(raw, type=FaultSpec)
    except msgspec.MsgspecError as exc:
        raise ValueError(f"{FAULT_ENV} is malformed: {exc}") from None
    return FaultInjector(spec, model)
