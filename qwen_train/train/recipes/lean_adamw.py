"""AdamW for bf16 weights: bf16 moments, fp32 arithmetic, stochastically rounded writes.

The lean recipe (recipe.py) keeps weights, gradients and both AdamW moments
in bf16: 8 bytes a trainable parameter instead of fp32 master's 16, which is
what lets the full 1.7B model train on a 32 GB card. What keeps the updates
of fp32 quality is how each step is computed: every value is read into fp32,
the AdamW update is the one torch.optim.AdamW computes (decoupled weight decay,
bias-corrected moments, the same defaults), and the new weight and both new
moments are written back to bf16 with stochastic rounding (sround.py), so no
update is lost to rounding, only made noisy, and unbiased. The weights need it
most (an update of lr = 2e-5 on a weight of 0.02 is 0.1%, under bf16's
half-spacing of 0.2-0.4%, and nearest rounding drops it); the moments get it
too, since with beta2 = 0.999 a step changes the second moment by about 0.1%
as well, and it costs one more random draw per value.

The update runs over each parameter in chunks of `CHUNK` elements, so the
fp32 temporaries stay bounded (a few hundred MB) however large a tensor is:
the text embedding alone is 311 M values, and fp32 copies of it would cost
gigabytes on a card that has none to spare.

Rounding draws from this optimizer's own generator, seeded with the run's
seed whenever the optimizer state is empty (at the first step, and after a
rollback to the base weights has cleared it), and saved in `state_dict()`
under `ROUNDING_KEY`, so a checkpoint holds the rounding stream with the
moments it produced: a resume draws exactly the bits the uninterrupted run
would have. On a GPU the arithmetic of a chunk and its three roundings run as
one compiled kernel (`_fused_chunk`): the eager form launches about 27 small
kernels a chunk, over 400 chunks a step at full size, and measured on the H200
the lean step was bound by those launches, not by the GPU. The random bits are
drawn outside it, from the same generator in the same order, so the stream
and its checkpointed state are the same in both forms. Every process of a distributed run seeds it alike and steps the
same parameters in the same order over the same all-reduced gradients, so the
replicas round identically and stay equal.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable
from typing import Any

import torch

from qwen_train.train.device.compiling import compile_failure
from qwen_train.train.recipes.sround import round_into_, rounding_noise, stochastic_bits_bf16

CHUNK = 1 << 22  # elements per update chunk: fp32 temporaries of 16 MiB each
ROUNDING_KEY = "stochastic_rounding"


class LeanAdamW(torch.optim.Optimizer):
    """AdamW over bf16 parameters with bf16 moments; see the module docstring."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float, seed: int,
                 device: torch.device, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 fused: bool | None = None) -> None:
        params = list(params)
        wrong = sorted({str(p.dtype) for p in params if p.dtype != torch.bfloat16})
        if wrong:
            raise TypeError(f"LeanAdamW trains bf16 parameters; got {', '.join(wrong)} (the lean recipe casts "
                            "the model first)")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})
        self.seed = seed
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)
        self.fused = device.type == "cuda" if fused is None else fused  # the trainer: when it compiles layers

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if not self.state:  # a fresh optimizer state starts a fresh rounding stream
            self.generator.manual_seed(self.seed)
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    self._update(param, group)
        return loss

    def _update(self, param: torch.Tensor, group: dict[str, Any]) -> None:
        assert param.grad is not None  # step() passes only parameters with a gradient
        state = self.state[param]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.contiguous_format)
            state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.contiguous_format)
        state["step"] += 1
        beta1, beta2 = group["betas"]
        lr, eps = float(group["lr"]), float(group["eps"])
        step_size = lr / (1 - beta1 ** state["step"])
        root_correction = math.sqrt(1 - beta2 ** state["step"])
        decay = 1 - lr * float(group["weight_decay"])
        if not param.is_contiguous():
            raise ValueError("LeanAdamW updates contiguous parameters only")
        weight, grad = param.view(-1), param.grad.reshape(-1)
        exp_avg, exp_avg_sq = state["exp_avg"].view(-1), state["exp_avg_sq"].view(-1)
        scalars = (step_size, root_correction, decay, beta1, beta2, eps)
        # Per-step values go in as a tensor, so a changing learning rate does not recompile the fused kernel.
        values = torch.tensor(scalars, dtype=torch.float32, device=grad.device) if self.fused else None
        for start in range(0, weight.numel(), CHUNK):
            part = slice(start, start + CHUNK)
            if values is not None and self.fused:
                self._fused_update(grad[part], exp_avg[part], exp_avg_sq[part], weight[part], values, scalars)
            else:
                self._eager_update(grad[part], exp_avg[part], exp_avg_sq[part], weight[part], scalars)

    def _eager_update(self, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
                      weight: torch.Tensor, scalars: tuple[float, ...]) -> None:
        step_size, root_correction, decay, beta1, beta2, eps = scalars
        g = grad.float()
        m = exp_avg.float().lerp_(g, 1 - beta1)
        v = exp_avg_sq.float().mul_(beta2).addcmul_(g, g, value=1 - beta2)
        w = weight.float().mul_(decay)
        w.addcdiv_(m, v.sqrt().div_(root_correction).add_(eps), value=-step_size)
        round_into_(exp_avg, m, self.generator)
        round_into_(exp_avg_sq, v, self.generator)
        round_into_(weight, w, self.generator)

    def _fused_update(self, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
                      weight: torch.Tensor, values: torch.Tensor, scalars: tuple[float, ...]) -> None:
        noise = [rounding_noise(grad, self.generator) for _ in range(3)]  # m, v, w: the eager form's order
        try:
            _fused_chunk()(grad, exp_avg, exp_avg_sq, weight, *noise, values)
        except Exception as exc:
            # It fails at its first call, compiling, before anything is written: a backend this device
            # lacks leaves the chunk as it was, so update it eagerly, and every chunk after it.
            if not compile_failure(exc):
                raise
            self.fused = False
            print(f"qwen-train: the lean optimizer's fused kernel failed to compile ({type(exc).__name__}: "
                  f"{str(exc).splitlines()[0] if str(exc) else ''}); it updates eagerly from now on",
                  file=sys.stderr, flush=True)
            self._eager_update(grad, exp_avg, exp_avg_sq, weight, scalars)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state[ROUNDING_KEY] = {"device": self.generator.device.type, "state": self.generator.get_state()}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        rounding = state_dict.pop(ROUNDING_KEY, None)
        if rounding is None:
            raise ValueError(f"this optimizer state has no {ROUNDING_KEY!r} entry: it was not written by the lean "
                             "recipe's optimizer")
        super().load_state_dict(state_dict)
        if rounding["device"] == self.generator.device.type:
            self.generator.set_state(rounding["state"].cpu())
        else:
            # A generator's state has a different form on another kind of device; a resume there is not
            # bit-exact anyway (other kernels), so continue on a stream seeded from the seed and the step.
            steps = max((int(s.get("step", 0)) for s in self.state.values()), default=0)
            self.generator.manual_seed(self.seed * 1_000_003 + steps)


def _chunk_math(grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, weight: torch.Tensor,
                noise_m: torch.Tensor, noise_v: torch.Tensor, noise_w: torch.Tensor,
                values: torch.Tensor) -> None:
    """The eager update's arithmetic and roundings, written in place, as one function for the compiler to fuse."""
    step_size, root_correction, decay, beta1, beta2, eps = values.unbind()
    g = grad.float()
    m = exp_avg.float().lerp(g, 1 - beta1)
    v = exp_avg_sq.float() * beta2 + (1 - beta2) * g * g
    w = weight.float() * decay - step_size * m / (v.sqrt() / root_correction + eps)
    exp_avg.copy_(stochastic_bits_bf16(m, noise_m))
    exp_avg_sq.copy_(stochastic_bits_bf16(v, noise_v))
    weight.copy_(stochastic_bits_bf16(w, noise_w))


_COMPILED: list[Callable[..., None]] = []


def _fused_chunk() -> Callable[..., None]:
    """`_chunk_math` compiled once per process (dynamic: a parameter's last chunk is shorter)."""
    if not _COMPILED:
        _COMPILED.append(torch.compile(_chunk_math, dynamic=True, fullgraph=True))
    return _COMPILED[0]
