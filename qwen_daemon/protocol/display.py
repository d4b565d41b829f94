"""How the protocol's values read to a person: numbers, sizes, durations, times and resource metrics.

It sits in the protocol, beside the records whose values it formats, because
both clients show those values: the CLI (cli/render.py) and the dashboard
(qwen_tui, which may import nothing of the daemon but its protocol). Sharing
one set means the two never disagree on what a loss, a size or a time reads
as. Plain strings only: colour and layout are each client's own.

The rules: a value that is not known reads as the medium's mark, never as 0
(a zero would be a measurement); NaN and Inf are spelled out, because they are
findings; a speed and an ETA exist only for a run that is live and active.
The mark is all a medium chooses: PLAIN's '-' for text that is piped, logged
and grepped, SCREEN's '—' on the dashboard, where it reads as a blank.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

from qwen_daemon.protocol.runs import ACTIVE_STATES, RunView

_DATE_TIME = "%Y-%m-%d %H:%M:%S"
_METRIC_LABELS: dict[str, str] = {
    "cpu_percent": "host CPU",
    "ram_used_bytes": "host RAM",
    "run_cpu_percent": "run CPU",
    "run_pss_bytes": "run RAM (PSS)",
    "run_rss_bytes": "run RSS, summed",
    "run_gpu_memory_bytes": "run GPU memory",
}
_GPU_METRIC = re.compile(r"^gpu(\d+)_(busy_percent|vram_used_bytes)$")
_RUN_GPU_METRIC = re.compile(r"^run_gpu(\d+)_memory_bytes$")


def eta_seconds(step: int | None, max_steps: int | None, steps_per_s: float | None) -> float | None:
    """Remaining steps over the current rate; None when either is unknown or zero."""
    if step is None or not max_steps or steps_per_s is None:
        return None
    if not math.isfinite(steps_per_s) or steps_per_s <= 0:
        return None
    return max(max_steps - step, 0) / steps_per_s


def is_live(view: RunView) -> bool:
    """Only a live, active run has a speed and an ETA worth showing."""
    return view.health == "live" and view.state in ACTIVE_STATES


def metric_label(name: str) -> str:
    """The sampler's metric names, in words; the unit shows in the values.

    Known names (the resources room's metric_values) get their words; any other
    name is shown with its unit suffix dropped, so a new metric still displays.
    """
    if name in _METRIC_LABELS:
        return _METRIC_LABELS[name]
    gpu = _GPU_METRIC.match(name)
    if gpu:
        return f"GPU{gpu.group(1)} {'busy' if gpu.group(2) == 'busy_percent' else 'VRAM'}"
    run_gpu = _RUN_GPU_METRIC.match(name)
    if run_gpu:
        return f"run memory on GPU{run_gpu.group(1)}"
    for suffix in ("_bytes", "_percent"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name.replace("_", " ")


@dataclass(frozen=True)
class Display:
    """The formatters, for one medium: `unknown` is what a value nobody knows reads as there."""

    unknown: str = "-"

    def decimal(self, value: float | None, digits: int = 4) -> str:
        """A loss-like number in fixed digits, so a column of them lines up."""
        if value is None:
            return self.unknown
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        return f"{value:.{digits}f}"

    def lr(self, value: float | None) -> str:
        """Learning rates span decades, so scientific notation reads best."""
        return self.unknown if value is None else f"{value:.2e}"

    def step(self, step: int | None, max_steps: int | None) -> str:
        if step is None:
            return self.unknown
        return f"{step}/{max_steps}" if max_steps else str(step)

    def speed(self, steps_per_s: float | None, suffix: str = "/s") -> str:
        """Slow full-size runs do well under one step per second: keep precision there."""
        if steps_per_s is None or not math.isfinite(steps_per_s):
            return self.unknown
        return f"{steps_per_s:.1f}{suffix}" if steps_per_s >= 10 else f"{steps_per_s:.2f}{suffix}"

    def duration(self, seconds: float | None) -> str:
        """Two significant units: '42s', '3m05s', '1h02m', '2d03h'."""
        if seconds is None or not math.isfinite(seconds) or seconds < 0:
            return self.unknown
        days, rest = divmod(int(round(seconds)), 86400)
        hours, rest = divmod(rest, 3600)
        minutes, secs = divmod(rest, 60)
        if days:
            return f"{days}d{hours:02d}h"
        if hours:
            return f"{hours}h{minutes:02d}m"
        if minutes:
            return f"{minutes}m{secs:02d}s"
        return f"{secs}s"

    def eta(self, view: RunView) -> str:
        if not is_live(view):
            return self.unknown
        return self.duration(eta_seconds(view.step, view.max_steps, view.steps_per_s))

    def size(self, value: float | None) -> str:
        """Bytes in the largest binary unit that keeps the number under 1024."""
        if value is None:
            return self.unknown
        size = float(value)
        for unit in ("B", "KiB", "MiB", "GiB"):
            if abs(size) < 1024:
                return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
            size /= 1024
        return f"{size:.1f} TiB"

    def percent(self, value: float | None) -> str:
        return self.unknown if value is None else f"{value:.1f}%"

    def metric(self, name: str, value: float | None) -> str:
        """Metric names carry their unit as a suffix (`cpu_percent`, `vram_used_bytes`)."""
        if name.endswith("_bytes"):
            return self.size(value)
        if name.endswith("_percent"):
            return self.percent(value)
        return self.unknown if value is None else f"{value:.4g}"

    def timestamp(self, stamp: float | None) -> str:
        """Local date and time in full, for text that outlives the day it was written."""
        return self.unknown if stamp is None else time.strftime(_DATE_TIME, time.localtime(stamp))

    def clock(self, stamp: float | None, now: float | None = None) -> str:
        """Local wall time; the date is added only when it is not today."""
        if stamp is None:
            return self.unknown
        local = time.localtime(stamp)
        if time.localtime(time.time() if now is None else now)[:3] == local[:3]:
            return time.strftime("%H:%M:%S", local)
        return time.strftime(_DATE_TIME, local)

    def age(self, stamp: float | None, now: float | None = None) -> str:
        if stamp is None:
            return "never"
        return f"{self.duration(max((time.time() if now is None else now) - stamp, 0.0))} ago"


PLAIN = Display("-")
SCREEN = Display("—")
