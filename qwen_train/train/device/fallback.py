"""When torch.compile fails on the device, the run goes on eagerly, says so, and loses no step.

torch compiles lazily: an arch without kernels, a missing C compiler for
Triton, or an op inductor cannot lower shows only when a compiled layer first
runs (or first runs backward), inside a step. Stopping the run there would
make compilation a gamble on every new device (ROCm's gfx1201 among them);
ignoring it would lose the step. So the step runs under a guard: on an error
that came out of compiled code (compiling.compile_failure), every compiled
module goes back to its eager call, dynamo's caches are dropped, the step's
traces are undone (gradients of the micro-batches already through backward,
the cursor and micro-step count it advanced, the random generators it drew
from, the fault injector's arming) and the same step is computed again,
eagerly. Nothing was applied (the optimizer comes after forward and
backward), so the step is neither applied twice nor skipped. status.json's
`compilation` and an event `compile_fallback` say what failed and where.

An evaluation that meets a compile failure (its no-grad graphs are compiled
apart from training's) is rerun eagerly the same way, and a run where
compilation could not even be set up (compiling.compile_regions) starts
eager and says so in the same field and event.

With more than one process the failure ends the run as before: one rank
rerunning alone would leave the others waiting in a collective. The event
says how to turn compilation off (QWEN_TRAIN_PERF).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from qwen_train.train.checkpointing.rng import restore_rng, rng_state
from qwen_train.train.data.cursor import Cursor
from qwen_train.train.device.compiling import (
    backend_name,
    compile_backend,
    compile_failure,
    compiled_modules,
    decompile,
    describe_failure,
    setup_failure,
    tick,
)
from qwen_train.train.session import Session
from qwen_train.train.step import StepOutcome, train_step

T = TypeVar("T")


def compiling(s: Session) -> bool:
    return s.perf.compile_layers or s.perf.compile_speaker


@dataclass(frozen=True)
class _Before:
    """What a step changes before its optimizer update: enough to compute it again from its start."""

    cursor: Cursor
    micro_steps: int
    rng: dict[str, Any]
    injector: tuple[int, bool] | None

    @classmethod
    def take(cls, s: Session) -> _Before:
        injector = (s.injector.hits, s.injector.armed) if s.injector is not None else None
        return cls(s.progress.cursor, s.progress.micro_steps, rng_state(), injector)

    def restore(self, s: Session) -> None:
        s.optimizer.zero_grad(set_to_none=True)  # the micro-batches that got through backward
        s.progress.cursor, s.progress.micro_steps = self.cursor, self.micro_steps
        restore_rng(self.rng)
        if s.injector is not None and self.injector is not None:
            s.injector.hits, s.injector.armed = self.injector


def announce_compilation(s: Session) -> None:
    """How the layers will run, in status.json and the log, before the first step."""
    failure = setup_failure()
    if compiling(s) and failure is not None and not compiled_modules(s.model):
        s.perf = replace(s.perf, compile_layers=False, compile_speaker=False)
        message = f"torch.compile could not be set up on {s.device}: {failure}; the run trains eagerly"
        s.heartbeat.update(compilation=f"eager: {message}")
        s.heartbeat.event("compile_fallback", message, s.progress.step)
        print(f"qwen-train: {message}", file=sys.stderr, flush=True)
        return
    if compiling(s):
        names = compiled_modules(s.model)
        text = (f"compiled: {len(names)} modules with {backend_name(compile_backend())} (dynamic shapes); "
                "a compile failure on this device turns the run eager")
    else:
        text = f"eager: compilation is off on {s.device.type} (QWEN_TRAIN_PERF compile_layers turns it on)"
    s.heartbeat.update(compilation=text)
    print(f"qwen-train: {text}", file=sys.stderr, flush=True)


def _fall_back(s: Session, where: str, step: int, exc: BaseException) -> None:
    """Make the run eager and record why; with several processes, record it and let the error end the run."""
    detail = describe_failure(exc)
    if s.accelerator.num_processes > 1:
        message = (f"torch.compile failed in {where} on {s.device}: {detail}; with {s.accelerator.num_processes} "
                   "processes a rank cannot rerun alone, so the run stops. Set QWEN_TRAIN_PERF="
                   "'{\"compile_layers\": false}' to train eagerly")
        s.heartbeat.event("compile_failed", message, step)
        print(f"qwen-train: {message}", file=sys.stderr, flush=True)
        raise exc
    undone = decompile(s.model)
    s.perf = replace(s.perf, compile_layers=False, compile_speaker=False)
    message = (f"torch.compile failed in {where} on {s.device}: {detail}; {undone} compiled modules run eagerly "
               f"from now on and {where} was computed again without compilation")
    s.heartbeat.update(compilation=f"eager since {where}, where compiled code failed on {s.device}: {detail}")
    s.heartbeat.event("compile_fallback", message, step)
    print(f"qwen-train: {message}", file=sys.stderr, flush=True)


def step_or_eager(s: Session, stop_asked: Callable[[], bool] | None = None) -> StepOutcome:
    """`train_step`, computed again eagerly if compiled code fails in it."""
    if not compiling(s):
        return train_step(s, stop_asked)
    step = s.progress.step + 1
    tick(step)
    before = _Before.take(s)
    try:
        return train_step(s, stop_asked)
    except Exception as exc:
        if not compile_failure(exc):
            raise
        _fall_back(s, f"step {step}", step, exc)
    before.restore(s)
    return train_step(s, stop_asked)


def eval_or_eager(s: Session, evaluate: Callable[[], T]) -> T:
    """An evaluation (which reads the model, draws no batch of the cursor), run again eagerly if compiled code
    fails in it."""
    if not compiling(s):
        return evaluate()
    model = s.model
    training, rng = model.training, rng_state()
    try:
        return evaluate()
    except Exception as exc:
        if not compile_failure(exc):
            raise
        _fall_back(s, f"the evaluation after step {s.progress.step}", s.progress.step, exc)
    restore_rng(rng)
    if training:  # evaluate puts the model back in train mode only when it returns
        model.train()
        model.get_submodule("speaker_encoder").eval()
    return evaluate()
