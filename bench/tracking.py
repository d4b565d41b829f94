"""How closely one loss curve tracks another on the same rows: the measure issue 13 states its tolerance in.

Both curves are smoothed by the same exponential moving average (bias-corrected, so the first steps are
not pulled toward zero), and the measure is the mean over steps of |smoothed(a) - smoothed(b)| /
smoothed(b). The runs draw the same batches at the same step, so the batch-to-batch spread of the raw
losses is common to both and mostly cancels; the smoothing takes out what remains of it, leaving how far
the weights themselves have moved apart. The CPU test (tests/test_lean_tracking.py) states its tolerance
in it; the full-size GPU check (bench/plan_check.py, part 2) reports the same kind of number.
"""

from __future__ import annotations

from collections.abc import Sequence

BETA = 0.9  # about a ten-step window


def smoothed(losses: Sequence[float], beta: float = BETA) -> list[float]:
    """Bias-corrected exponential moving average of `losses`."""
    out, average = [], 0.0
    for step, value in enumerate(losses, start=1):
        average = beta * average + (1 - beta) * value
        out.append(average / (1 - beta**step))
    return out


def mean_relative_difference(curve: Sequence[float], reference: Sequence[float], beta: float = BETA) -> float:
    """Mean over steps of |smoothed(curve) - smoothed(reference)| / smoothed(reference)."""
    if len(curve) != len(reference) or not reference:
        raise ValueError(f"curves of {len(curve)} and {len(reference)} steps cannot be compared step by step")
    a, b = smoothed(curve, beta), smoothed(reference, beta)
    return sum(abs(x - y) / abs(y) for x, y in zip(a, b, strict=True)) / len(b)


def max_relative_difference(curve: Sequence[float], reference: Sequence[float], beta: float = BETA) -> float:
    """The worst step of the same comparison."""
    a, b = smoothed(curve, beta), smoothed(reference, beta)
    return max(abs(x - y) / abs(y) for x, y in zip(a, b, strict=True))
