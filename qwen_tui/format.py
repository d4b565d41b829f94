"""How the dashboard colours what it shows: health, state, surface class, cursor verdict, job kind.

Only the styling is here, kept free of widgets so every screen colours a
value the same way. How a value reads (numbers, sizes, times, the mark for a
value nobody knows) is the protocol's display module, shared with the CLI so
the two never disagree; the dashboard's medium there is SCREEN.
"""

from __future__ import annotations

from rich.text import Text

from qwen_daemon.protocol import RunView, kind_info
from qwen_daemon.protocol.display import SCREEN

DASH = SCREEN.unknown

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
    "queued": "yellow",
    "stopped": "dim",
    "completed": "bold green",
    "failed": "bold red",
    "cursor_rejected": "bold red",
    "failed_non_finite": "bold red",
    "failed_oom": "bold red",
    "failed_disk_full": "bold red",
    "interrupted": "bold magenta",
}


def health_text(view: RunView) -> Text:
    """'stale: <reason>' carries the reason so the operator need not open the run."""
    label: str = view.health
    if view.health == "stale":
        label = f"stale: {view.stale_reason}" if view.stale_reason else "stale"
    return Text(label, style=HEALTH_STYLE.get(view.health, ""))


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


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
    """A run's job kind; a job that works on another run (a diagnose or gate job) names that run."""
    info = kind_info(view.kind)
    if info.trains:
        return Text(view.kind, style="dim")
    if info.child and view.parent:
        return Text(f"{view.kind} of {view.parent}", style="magenta")
    return Text(view.kind, style="magenta")
