"""`qwen-train doctor`: is this the training stack the trainer is tested with, and what can this GPU do?

On a new host or image (Hemma's R9700 under ROCm, a rented NVIDIA card) the
first questions are always the same: which torch build is this (CUDA or HIP),
does it see the card, which arch is it and does the build carry kernels for
it, does it do bf16, how much memory is free beside the other services, and
does torch.compile work there. Answering them takes seconds here; meeting
them in a run costs its first hours. One line per check: "ok ", "BAD" (fails
the command), "WARN" (the trainer copes, more slowly), "-- " (a fact).

The compile probe compiles a miniature decoder layer (RMSNorm, SDPA
attention, a SiLU-gated MLP) with the backend and dynamic shapes the trainer
uses (train/device/compiling.py), runs its forward and backward once on the device,
under bf16 autocast where the card does bf16 as training does, and compares
it with the same layer run eagerly. A failure is a WARN, not a BAD: the
trainer falls back to eager by itself (train/device/fallback.py). `--require-compile`
makes it fail the command, which the image build uses so an image without a
working compiler toolchain is not shipped.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from qwen_train import exitcodes, torch_stack

if TYPE_CHECKING:
    import torch

# The stack the trainer is tested with (DESIGN §7), beside torch and torchaudio: those may be any pair of the
# supported range that is one build (qwen_train/torch_stack.py), so Hemma's ROCm 2.10.0+rocm7.1, PyPI's CUDA
# 2.11.0 and Colab's own torch all pass without a reinstall.
STACK = {"qwen-tts": "0.1.1", "transformers": "4.57.3", "accelerate": "1.12.0", "peft": "0.21.2",
         "resemblyzer": "0.1.4"}
FLOORS = {"jiwer": "4.0"}  # the gate's CER and WER: any release from this one (pyproject's train extra)
NO_DEPS = ("qwen-tts", "resemblyzer")  # installed without their declared dependencies (see pyproject's train extra)
GIB = float(1 << 30)


@dataclass(frozen=True)
class Check:
    mark: str  # "ok ", "BAD", "WARN" or "-- "
    text: str

    def line(self) -> str:
        return f"{self.mark} {self.text}"


def _installed(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "missing"


def version_checks(installed: Callable[[str], str] = _installed) -> list[Check]:
    """torch in the supported range with a torchaudio of its build, then the pinned rest of the stack."""
    checks = torch_checks(installed)
    for name, want in STACK.items():
        have = installed(name)
        ok = have.split("+")[0] == want
        hint = "" if ok else f"  (pip install {'--no-deps ' if name in NO_DEPS else ''}{name}=={want})"
        checks.append(Check("ok " if ok else "BAD", f"{name} {have} (want {want}){hint}"))
    for name, floor in FLOORS.items():
        have = installed(name)
        build, least = torch_stack.parse(have), torch_stack.parse(floor)
        ok = build is not None and least is not None and build.release >= least.release
        hint = "" if ok else f"  (pip install '{name}>={floor}')"
        checks.append(Check("ok " if ok else "BAD", f"{name} {have} (want >={floor}){hint}"))
    return checks


def torch_checks(installed: Callable[[str], str] = _installed) -> list[Check]:
    """One line each for torch and torchaudio; the one at fault carries the verdict, in the trainer's words."""
    verdict = torch_stack.judge(installed("torch"), installed("torchaudio"))
    if verdict.culprit == "torch":
        return [Check("BAD", verdict.text()),
                Check("-- ", f"torchaudio {verdict.torchaudio} (matched against torch once torch is in range)")]
    torch_line = Check("ok ", f"torch {verdict.torch} (supported: {torch_stack.RANGE_TEXT})")
    if verdict.culprit == "torchaudio":
        return [torch_line, Check("BAD", verdict.text())]
    return [torch_line, Check("ok ", f"torchaudio {verdict.torchaudio} (the same release and build as torch)")]


def device_checks() -> list[Check]:
    """Backend, then per GPU: name and arch, kernels for that arch, bf16, free memory."""
    import torch

    build = (f"HIP {torch.version.hip}" if torch.version.hip else f"CUDA {torch.version.cuda}" if torch.version.cuda
             else "CPU-only")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return [Check("-- ", f"backend {build} build (torch {torch.__version__}); no GPU visible "
                             "(torch.cuda.is_available() is False): runs compute on the cpu")]
    checks = [Check("ok ", f"backend {build} (torch {torch.__version__}), {count} GPU(s)")]
    built_for = set(torch.cuda.get_arch_list())
    for index in range(count):
        checks.extend(_gpu_checks(index, bool(torch.version.hip), built_for))
    return checks


def _gpu_checks(index: int, hip: bool, built_for: set[str]) -> list[Check]:
    import torch

    props = torch.cuda.get_device_properties(index)
    if hip:
        arch = str(getattr(props, "gcnArchName", "unknown")).split(":")[0]  # "gfx1201:sramecc-:xnack-"
        kernels = arch in built_for
        ident = f"arch {arch}"
    else:
        arch = f"sm_{props.major}{props.minor}"
        kernels = arch in built_for or f"compute_{props.major}{props.minor}" in built_for
        ident = f"compute capability {props.major}.{props.minor}"
    checks = [Check("ok ", f"cuda:{index} {props.name}, {ident}, {props.multi_processor_count} compute units")]
    if not kernels:  # CUDA may still JIT from an older PTX; HIP has nothing to fall back on
        text = f"cuda:{index}: this torch build has no kernels for {arch} (built for {', '.join(sorted(built_for))})"
        checks.append(Check("BAD" if hip else "WARN", text))
    bf16 = torch.cuda.is_bf16_supported()
    support = "supported" if bf16 else "NOT supported: the trainer computes in fp32 there"
    checks.append(Check("ok " if bf16 else "WARN", f"cuda:{index} bf16 {support}"))
    free, total = torch.cuda.mem_get_info(index)
    checks.append(Check("-- ", f"cuda:{index} memory {free / GIB:.1f} GiB free of {total / GIB:.1f} GiB "
                               f"({(total - free) / GIB:.1f} GiB held, by this or other processes)"))
    return checks


def _probe_layer(width: int = 64, heads: int = 4) -> torch.nn.Module:
    import torch

    class ProbeLayer(torch.nn.Module):
        """The op mix of a decoder layer, small: what the trainer compiles, in miniature."""

        def __init__(self) -> None:
            super().__init__()
            self.norm = torch.nn.RMSNorm(width)
            self.qkv = torch.nn.Linear(width, 3 * width, bias=False)
            self.out = torch.nn.Linear(width, width, bias=False)
            self.gate = torch.nn.Linear(width, 2 * width, bias=False)
            self.down = torch.nn.Linear(2 * width, width, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            rows, length, _ = x.shape
            q, k, v = self.qkv(self.norm(x)).view(rows, length, 3, heads, -1).permute(2, 0, 3, 1, 4)
            attn = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.out(attn.transpose(1, 2).reshape(rows, length, width))
            return x + self.down(torch.nn.functional.silu(self.gate(x)))

    return ProbeLayer()


def _run_layer(layer: torch.nn.Module, x: torch.Tensor, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        out = layer(x)
    out.float().square().mean().backward()
    grad = next(layer.parameters()).grad
    assert grad is not None
    return out.detach().float(), grad.detach().float()


def compile_check(device: torch.device) -> tuple[bool, Check]:
    """Compile the probe layer as the trainer compiles its layers, run it forward and backward, compare."""
    import torch

    from qwen_train.train.device.compiling import backend_name, compile_backend, describe_failure

    backend = compile_backend()
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    cpu = device.type == "cpu"
    where = f"{backend_name(backend)} on {device}{' (bf16 autocast)' if bf16 else ''}{' (scalar C++)' if cpu else ''}"
    # Seconds, not minutes: no pool of compile workers for a handful of kernels, and on a CPU no test builds
    # of each vector ISA (the trainer compiles on GPUs; on a CPU the probe shows the C++ toolchain works).
    settings: dict[str, object] = {"compile_threads": 1, **({"cpp.vec_isa_ok": False} if cpu else {})}
    torch.manual_seed(0)
    eager = _probe_layer().to(device)
    compiled = copy.deepcopy(eager)
    x = torch.randn(2, 16, 64, device=device)
    start = time.perf_counter()
    try:
        import torch._inductor.config  # dynamo and inductor load here; that alone can fail (a uid with no name)

        with torch._inductor.config.patch(settings):
            compiled.compile(dynamic=True, backend=backend)
            got = _run_layer(compiled, x, bf16)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
    except Exception as exc:
        return False, Check("WARN", f"compile {where} failed: {describe_failure(exc)}; the trainer falls back "
                                    "to eager there (QWEN_TRAIN_PERF='{\"compile_layers\": false}' skips trying)")
    seconds = time.perf_counter() - start
    want = _run_layer(eager, x, bf16)
    tolerance = 5e-2 if bf16 else 1e-4
    diff = max(float((g - w).abs().max()) for g, w in zip(got, want, strict=True))
    if diff > tolerance * max(1.0, max(float(w.abs().max()) for w in want)):
        return False, Check("WARN", f"compile {where}: compiled layer differs from eager by {diff:.2e} "
                                    f"(tolerance {tolerance:g}); set QWEN_TRAIN_PERF='{{\"compile_layers\": false}}'")
    return True, Check("ok ", f"compile {where}: a small layer's forward and backward match eager "
                              f"(max |diff| {diff:.1e}) after {seconds:.1f} s")


def run_doctor(require_compile: bool = False, out: Callable[[str], None] = print) -> int:
    """Print the checks; FAILED when a version is wrong, the build lacks the GPU's kernels, or (when required)
    the compile probe failed."""
    checks = version_checks()
    for check in checks:
        out(check.line())
    try:
        import torch
    except ImportError as exc:
        out(f"BAD torch does not import ({exc}): no device checks")
        return exitcodes.FAILED
    devices = device_checks()
    for check in devices:
        out(check.line())
    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    compiled, check = compile_check(device)
    if require_compile and not compiled:
        check = Check("BAD", check.text)
    out(check.line())
    bad = any(c.mark == "BAD" for c in [*checks, *devices]) or (require_compile and not compiled)
    return exitcodes.FAILED if bad else 0
