"""Words for a run's loss and eval curves: what the sparkline is drawn from, and its scale.

A sparkline has no axis, so the label carries what it cannot: the step range,
the last/min/max values, where the points came from (the daemon's record of
the run, or only what this dashboard saw while watching, and why), and any
non-finite points, which are left out of the line (they would flatten it) but
named, because a NaN is a finding and not noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from rich.text import Text

from qwen_daemon.protocol import EvalPoint, LossPoint
from qwen_daemon.protocol.display import SCREEN
from qwen_tui.history import Series, Source

MAX_STEPS_NAMED = 5


def finite_values(series: Series) -> list[float]:
    return [value for value in series.values() if math.isfinite(value)]


def non_finite_steps(series: Series) -> list[int]:
    return [step for step, value in series.points() if not math.isfinite(value)]


def mean(values: Sequence[float]) -> float:
    """The sparkline's bucket summary: a loss curve reads as its average, not its spikes."""
    return math.fsum(values) / len(values) if values else 0.0


def _source_words(source: Source, error: str | None) -> str:
    if source == "daemon":
        return "the run's record, from the daemon"
    if error:
        return f"seen while watching; the daemon gave no history: {error}"
    return "seen while watching"


def _splits(per_split: Mapping[str, float]) -> str:
    return ", ".join(f"{name} {SCREEN.decimal(value)}" for name, value in sorted(per_split.items()))


def curve_label(
    title: str,
    series: Series,
    source: Source,
    error: str | None = None,
    last_loss: LossPoint | None = None,
    last_eval: EvalPoint | None = None,
) -> Text:
    """Two lines: title, point count, step range and source; then last/min/max and parts."""
    values = finite_values(series)
    text = Text()
    text.append(title, style="bold")
    if not len(series):
        empty = "no points yet" if source == "daemon" else "no points yet (only live runs are recorded)"
        text.append(f": {empty} ({_source_words(source, error)})", style="dim")
        return text
    steps = series.steps()
    text.append(f": {len(series)} points, steps {steps[0]}–{steps[-1]} ", style="")
    text.append(f"({_source_words(source, error)})", style="dim")
    if values:
        text.append(
            f"\nlast {SCREEN.decimal(series.values()[-1])}   min {SCREEN.decimal(min(values))}   "
            f"max {SCREEN.decimal(max(values))}"
        )
    if last_loss is not None:
        text.append(
            f"   talker {SCREEN.decimal(last_loss.talker)}, code predictor {SCREEN.decimal(last_loss.code_predictor)}",
            style="dim",
        )
    if last_eval is not None and last_eval.per_split:
        text.append(f"   per split: {_splits(last_eval.per_split)}", style="dim")
    bad = non_finite_steps(series)
    if bad:
        named = ", ".join(str(step) for step in bad[:MAX_STEPS_NAMED])
        more = f" and {len(bad) - MAX_STEPS_NAMED} more" if len(bad) > MAX_STEPS_NAMED else ""
        text.append(
            f"\n{len(bad)} non-finite point{'s' if len(bad) != 1 else ''} not drawn: step {named}{more}",
            style="bold red",
        )
    return text
