"""Plain formatting of daemon records for display.

Kept free of widgets so the rules that matter to an operator (a stale run never
shows numbers as live, an unknown value is a dash rather than a zero, an ETA is
only given for a run that is actually moving) are tested in one place and
applied the same way on every screen.
"""

from __future__ import annotations

import math
import re
import time

from rich.text import Text

from qwen_daemon.protocol import ACTIVE_STATES, RunView

DASH = "—"

HEALTH_STYLE: dict[str, str] = {
    "live": "bold green",
    "stale": "bold yellow",
    "waiting": "cyan",
    "ended": "dim",
}

STATE_STYLE: dict[str, str] = {
    "launching": "cyan",
    "running": "green",
    "stopping": "yellow",
    "stopped": "dim",
    "completed": "bold green",
    "failed": "bold red",
    "cursor_rejected": "bold red",
    "failed_non_finite": "bold red",
    "interrupted": "bold magenta",
}


def fmt_float(value: float | None, digits: int = 4) -> str:
    """A loss-like number; NaN/Inf are spelled out because they are findings."""
    if value is None:
        return DASH
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.{digits}f}"


def fmt_lr(value: float | None) -> str:
    """Learning rates span decades, so scientific notation reads best."""
    if value is None:
        return DASH
    return f"{value:.2e}"


def fmt_step(step: int | None, max_steps: int | None) -> str:
    if step is None:
        return DASH
    if max_steps:
        return f"{step}/{max_steps}"
    return str(step)


def fmt_speed(steps_per_s: float | None, suffix: str = "/s") -> str:
    """Slow full-size runs do well under one step per second: keep precision there."""
    if steps_per_s is None or not math.isfinite(steps_per_s):
        return DASH
    if steps_per_s >= 10:
        return f"{steps_per_s:.1f}{suffix}"
    return f"{steps_per_s:.2f}{suffix}"


def fmt_duration(seconds: float | None) -> str:
    """Two significant units: '42s', '3m05s', '1h02m', '2d03h'."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return DASH
    total = int(round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


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


def fmt_eta(view: RunView) -> str:
    if not is_live(view):
        return DASH
    return fmt_duration(eta_seconds(view.step, view.max_steps, view.steps_per_s))


def health_text(view: RunView) -> Text:
    """'stale: <reason>' carries the reason so the operator need not open the run."""
    label: str = view.health
    if view.health == "stale":
        label = f"stale: {view.stale_reason}" if view.stale_reason else "stale"
    return Text(label, style=HEALTH_STYLE.get(view.health, ""))


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


def fmt_bytes(value: float | None) -> str:
    if value is None:
        return DASH
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def fmt_percent(value: float | None) -> str:
    if value is None:
        return DASH
    return f"{value:.1f}%"


def fmt_metric(name: str, value: float) -> str:
    """Metric names carry their unit as a suffix (`cpu_percent`, `vram_used_bytes`)."""
    if name.endswith("_bytes"):
        return fmt_bytes(value)
    if name.endswith("_percent"):
        return fmt_percent(value)
    return f"{value:.4g}"


_METRIC_LABELS: dict[str, str] = {
    "cpu_percent": "host CPU",
    "ram_used_bytes": "host RAM",
    "run_cpu_percent": "run CPU",
    "run_rss_bytes": "run RAM (RSS)",
    "run_gpu_memory_bytes": "run GPU memory",
}
_GPU_METRIC = re.compile(r"^gpu(\d+)_(busy_percent|vram_used_bytes)$")
_RUN_GPU_METRIC = re.compile(r"^run_gpu(\d+)_memory_bytes$")


def metric_label(name: str) -> str:
    """The sampler's metric names, in words; the unit shows in the values.

    Known names (`qwen_daemon.summary.metric_values`) get their words; any other
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


def fmt_clock(timestamp: float | None, now: float | None = None) -> str:
    """Local wall time; the date is added only when it is not today."""
    if timestamp is None:
        return DASH
    now = time.time() if now is None else now
    local = time.localtime(timestamp)
    if time.localtime(now)[:3] == local[:3]:
        return time.strftime("%H:%M:%S", local)
    return time.strftime("%Y-%m-%d %H:%M:%S", local)


def fmt_age(timestamp: float | None, now: float | None = None) -> str:
    if timestamp is None:
        return "never"
    now = time.time() if now is None else now
    return f"{fmt_duration(max(now - timestamp, 0.0))} ago"


CLASS_STYLE: dict[str, str] = {
    "mechanism": "green",
    "recovery": "yellow",
    "provenance": "blue",
    "legacy-readonly": "dim",
    "deprecated": "dim strike",
}

_VERDICT_STYLE: tuple[tuple[str, str], ...] = (
    ("ok:", "green"),
    ("reset:", "bold yellow"),
    ("rejected:", "bold red"),
)


def cursor_verdict_text(verdict: str | None) -> Text:
    """The trainer's cursor check, coloured by its prefix.

    "ok:" (the cursor matches the bundle), "reset:" (an epoch restarted from its
    first batch because the operator asked: weights reused on other data) and
    "rejected:" (fail-closed: the run refused to start) are the trainer's words;
    anything else is shown as it came.
    """
    if verdict is None:
        return Text(DASH, style="dim")
    for prefix, style in _VERDICT_STYLE:
        if verdict.startswith(prefix):
            return Text(verdict, style=style)
    return Text(verdict)


def surface_class_text(klass: str | None) -> Text:
    if klass is None:
        return Text(DASH, style="dim")
    return Text(klass, style=CLASS_STYLE.get(klass, ""))


def kind_text(view: RunView) -> Text:
    """A run's job kind; a diagnose or gate job names the run it works on."""
    if view.kind == "train":
        return Text("train", style="dim")
    if view.kind in ("diagnose", "gate") and view.parent:
        return Text(f"{view.kind} of {view.parent}", style="magenta")
    return Text(view.kind, style="magenta")
