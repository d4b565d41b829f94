"""The non-finite guard: decide, from numbers already on the host, whether a step may apply.

The loop fetches the loss parts and the gradient norm in one device sync (the
one it needs for logging anyway), so the guard adds no sync on the normal path.
"""

from __future__ import annotations

import math

from qwen_train.spec import GuardConfig


def step_problems(parts: dict[str, float], grad_norm: float, cfg: GuardConfig) -> list[str]:
    """Empty when the step is fine; otherwise one phrase per offending number."""
    if not cfg.enabled:
        return []
    problems: list[str] = []
    for name, value in parts.items():
        if not math.isfinite(value):
            problems.append(f"{name} loss is {value!r}")
        elif cfg.max_loss is not None and value > cfg.max_loss:
            problems.append(f"{name} loss {value:.4g} is absurd (guard.max_loss {cfg.max_loss:.4g})")
    if not math.isfinite(grad_norm):
        problems.append(f"gradient norm is {grad_norm!r}")
    elif cfg.max_grad_norm is not None and grad_norm > cfg.max_grad_norm:
        problems.append(f"gradient norm {grad_norm:.4g} is absurd (guard.max_grad_norm {cfg.max_grad_norm:.4g})")
    return problems
