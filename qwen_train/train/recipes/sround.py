"""Stochastic rounding from fp32 to bf16, drawn from a generator the caller owns.

bf16 keeps 8 significant bits (7 stored), so rounding to nearest loses every
change smaller than half a unit in the last place: an AdamW update of 2e-5 on
a weight of 0.02 (0.1% of it) is below bf16's half-ulp (0.2-0.4%) and vanishes,
step after step. Stochastic rounding rounds up with a probability equal to
the fraction that was cut off, so each rounded value equals the exact one in
expectation and small updates accumulate over steps instead of disappearing.

It is done on the bit pattern: an fp32 is a bf16 followed by 16 more mantissa
bits. Adding 16 uniform random bits below the bf16 mantissa and truncating
carries into the kept part exactly when the random number is at least
2^16 minus the cut-off bits, i.e. with probability (cut-off bits) / 2^16,
away from zero for either sign (the sign is a separate bit). Values already
representable in bf16 stay exact; infinities stay infinite; a carry past the
largest finite bf16 becomes infinity, as rounding up there must.

The random bits come from the caller's `torch.Generator` only, never the
global one, so the rounding stream is a separate, saveable state (the lean
optimizer keeps its generator in its checkpointed state dict) and drawing
from it disturbs no other random number in the run.
"""

from __future__ import annotations

import torch

_LOW_BITS = 1 << 16  # the fp32 mantissa bits bf16 does not keep
_HIGH_MASK = -_LOW_BITS  # 0xFFFF0000 as a signed int32: keeps sign, exponent and bf16's 7 mantissa bits


def stochastic_bf16(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """`x` (fp32) rounded to bf16 stochastically: up with the probability of the bits that are cut off."""
    if x.dtype != torch.float32:
        raise TypeError(f"stochastic rounding takes an fp32 tensor, got {x.dtype}")
    x = x.contiguous()
    return stochastic_bits_bf16(x, rounding_noise(x, generator))


def rounding_noise(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """16 random bits per element of `like` (int32), from `generator` only: what one rounding of it draws."""
    return torch.randint(0, _LOW_BITS, like.shape, dtype=torch.int32, device=like.device, generator=generator)


def stochastic_bits_bf16(x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """`x` (fp32) rounded to bf16 with the given 16-bit `noise` (int32, same shape): the rounding itself.

    Apart from the draw so that a compiled caller can fuse it: the random bits come from the caller's
    generator outside the compiled region, in the same order as `stochastic_bf16` draws them.
    """
    bits = (noise + x.view(torch.int32)) & _HIGH_MASK
    # The low 16 bits are now zero, so this conversion is exact: no second rounding.
    return bits.view(torch.float32).to(torch.bfloat16)


def round_into_(target: torch.Tensor, x: torch.Tensor, generator: torch.Generator) -> None:
    """Write fp32 `x` into bf16 `target` (same shape) with stochastic rounding."""
    if target.dtype != torch.bfloat16:
        raise TypeError(f"stochastic rounding writes into a bf16 tensor, got {target.dtype}")
    target.copy_(stochastic_bf16(x, generator))
