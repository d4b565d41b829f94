"""torch.compile as the trainer uses it: which backend, how its failures look, and how to undo it.

One module, because three places must agree: `perf.speed_up_model` compiles
the decoder layers with `compile_backend()`, the eager fallback (fallback.py)
asks `compile_failure` whether an error came from compiled code and calls
`decompile`, and `qwen-train doctor` probes the very backend the trainer uses.

Compilation in torch is lazy, so its failures arrive while training, in
three shapes: compiling a forward graph raises `BackendCompilerFailed` from
the first call of a layer; AOTAutograd compiles the backward graph lazily,
in the first backward, and raises whatever the compiler raised from inside
autograd (a plain RuntimeError, say); and a compiled kernel that fails when
it runs (a GPU arch the kernels were not built for) raises from the
generated code. So a failure is told by its type *or* by a frame of torch's
compile stack (or Triton) on its traceback, not by type alone.

Test-only, inert unless set: `QWEN_TEST_COMPILE_FAULT='{"phase": P, "step": N}'`
replaces the backend by one that fails as a device would. Phase "compile"
raises when a forward graph is compiled; "backward" compiles the forward
(running it as eager torch ops) and raises when the backward graph is
compiled; "run" compiles both and makes them raise when called from training
step N on (the step clock is `tick`, set by the fallback before each step),
like a kernel that fails at run time. The ops run are the eager ones, so on
a CPU the steps before the fault compute what an eager run computes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Literal

import msgspec
import torch

COMPILE_BACKEND = "inductor"  # torch.compile's default; named so doctor probes what the trainer compiles with
COMPILE_FAULT_ENV = "QWEN_TEST_COMPILE_FAULT"
# Where torch's compile stack (and Triton, which inductor's GPU kernels are written in) lives.
_COMPILE_STACK = ("/torch/_dynamo/", "/torch/_inductor/", "/torch/_functorch/", "/triton/")

Backend = str | Callable[..., Any]


class CompileFault(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    phase: Literal["compile", "backward", "run"]
    step: int = 1  # phase "run" only: the first training step whose compiled graphs fail


_clock = {"step": 0}


def tick(step: int) -> None:
    """The training step about to be computed; only the test fault's "run" phase reads it."""
    _clock["step"] = step


def compile_fault() -> CompileFault | None:
    raw = os.environ.get(COMPILE_FAULT_ENV)
    if not raw:
        return None
    try:
        return msgspec.json.decode(raw, type=CompileFault)
    except msgspec.MsgspecError as exc:
        raise ValueError(f"{COMPILE_FAULT_ENV} is malformed: {exc}") from None


def compile_backend() -> Backend:
    """The backend the trainer compiles its layers with: inductor, or the test fault's stand-in."""
    fault = compile_fault()
    return COMPILE_BACKEND if fault is None else _fault_backend(fault)


def _fault_backend(fault: CompileFault) -> Backend:
    from torch._dynamo.backends.common import aot_autograd
    from torch._functorch.aot_autograd import make_boxed_func

    def refuse(gm: torch.fx.GraphModule, example_inputs: Any) -> Any:
        raise RuntimeError(f"test fault ({COMPILE_FAULT_ENV}): the backend failed to compile a "
                           f"{len(gm.graph.nodes)}-node graph")

    def as_eager(gm: torch.fx.GraphModule, example_inputs: Any) -> Any:
        return make_boxed_func(gm.forward)

    def failing_from_step(gm: torch.fx.GraphModule, example_inputs: Any) -> Any:
        def run(*args: Any) -> Any:
            if _clock["step"] >= fault.step:
                raise RuntimeError(f"test fault ({COMPILE_FAULT_ENV}): a compiled kernel failed at step "
                                   f"{_clock['step']}")
            return gm.forward(*args)

        return make_boxed_func(run)

    if fault.phase == "compile":
        return refuse
    if fault.phase == "backward":
        return aot_autograd(fw_compiler=as_eager, bw_compiler=refuse)
    return aot_autograd(fw_compiler=failing_from_step, bw_compiler=failing_from_step)


_setup: dict[str, str | None] = {"failure": None}


def compile_regions(modules: list[torch.nn.Module]) -> None:
    """`Module.compile` each with the trainer's backend and dynamic shapes.

    torch compiles lazily, so what can fail here is setting compilation up at all: importing dynamo fails,
    for one, under a uid with no name (inductor names its cache after the user, and a container's
    `--user UID:GID` has none unless USER is set). Then the modules stay eager and the failure is kept
    for `setup_failure`, which the fallback reports as it reports a failure in a step.
    """
    backend = compile_backend()  # a malformed test switch is the test's error, not the device's
    try:
        import torch._dynamo

        # Headroom for the few shape families a run meets (masked or not, speaker mel lengths).
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        for module in modules:
            module.compile(dynamic=True, backend=backend)
    except Exception as exc:
        for module in modules:
            module._compiled_call_impl = None
        _setup["failure"] = describe_failure(exc)


def setup_failure() -> str | None:
    """Why the last `compile_regions` left its modules eager, if it did."""
    return _setup["failure"]


def backend_name(backend: Backend) -> str:
    return backend if isinstance(backend, str) else f"the {COMPILE_FAULT_ENV} test backend"


def compile_failure(exc: BaseException) -> bool:
    """Whether `exc` came out of compiled code (compiling it or running it), so an eager rerun may succeed.

    Running out of memory is never one: the same step would run out eagerly too (oom.py handles it).
    """
    if isinstance(exc, torch.OutOfMemoryError) or not isinstance(exc, Exception):
        return False
    from torch._dynamo.exc import TorchDynamoException

    if isinstance(exc, TorchDynamoException):
        return True
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename.replace("\\", "/")
        if any(part in filename for part in _COMPILE_STACK):
            return True
        tb = tb.tb_next
    return False


def describe_failure(exc: BaseException, limit: int = 300) -> str:
    """The error in one line: the innermost cause's type and first line, and what torch wrapped it in.

    Dynamo's own message runs to pages and starts "backend='inductor' raised:", so the cause is what
    names the problem (a missing compiler, an unsupported arch).
    """
    chain = [exc]
    while len(chain) < 8:
        inner = getattr(chain[-1], "inner_exception", None) or chain[-1].__cause__
        if not isinstance(inner, BaseException) or inner in chain:
            break
        chain.append(inner)
    cause = chain[-1]
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    text = f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__
    if cause is not exc:
        text += f" (raised as {type(exc).__name__})"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def compiled_modules(model: torch.nn.Module) -> list[str]:
    """Names of the modules `Module.compile` was called on (it keeps the compiled call beside the eager one)."""
    return [name for name, module in model.named_modules() if getattr(module, "_compiled_call_impl", None) is not None]


def decompile(model: torch.nn.Module) -> int:
    """Put every compiled module back on its eager call and drop dynamo's caches; the number undone."""
    import torch._dynamo

    count = 0
    for module in model.modules():
        if getattr(module, "_compiled_call_impl", None) is not None:
            module._compiled_call_impl = None
            count += 1
    torch._dynamo.reset()
    return count
