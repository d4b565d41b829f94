"""A run's history: the daemon's events and the trainer's, on one timeline.

The daemon records what happened to the run (launched, stop requested,
reattached, interrupted); the trainer records what happened inside it
(checkpoint written, eval, retry). Interleaving both by time is what lets an
operator coming back read why a run is where it is.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from qwen_daemon.protocol.display import SCREEN
from qwen_train.status import Event
from qwen_tui.format import DASH

MAX_EVENTS = 50
_ALARM_WORDS = ("fail", "non_finite", "non-finite", "error", "reject", "interrupt")


def _identity(event: Event) -> tuple[float, str, str, int | None]:
    """Events carry a dict of numbers, so they are not hashable; these fields identify one."""
    return (event.time, event.kind, event.message, event.step)


def timeline(run_events: Sequence[Event], trainer_events: Sequence[Event]) -> list[tuple[str, Event]]:
    """Both sources, oldest first, each event once, the newest MAX_EVENTS kept.

    The daemon may already have merged the trainer's status events into the
    run's events; an event is shown once either way, tagged by where it came from.
    """
    from_trainer = {_identity(e) for e in trainer_events}
    merged = list({_identity(e): e for e in [*run_events, *trainer_events]}.values())
    tagged = [("trainer" if _identity(event) in from_trainer else "daemon", event) for event in merged]
    tagged.sort(key=lambda item: item[1].time)
    return tagged[-MAX_EVENTS:]


def events_renderable(
    run_events: Sequence[Event], trainer_events: Sequence[Event], now: float | None = None
) -> Table | Text:
    entries = timeline(run_events, trainer_events)
    if not entries:
        return Text("no events yet", style="dim")
    table = Table(box=None, padding=(0, 2), expand=False, show_header=True)
    table.add_column("time", no_wrap=True)
    table.add_column("from", style="dim")
    table.add_column("kind", style="bold")
    table.add_column("step", justify="right")
    table.add_column("message")
    for source, event in entries:
        alarm = any(word in event.kind.lower() for word in _ALARM_WORDS)
        table.add_row(
            SCREEN.clock(event.time, now),
            source,
            Text(event.kind, style="red" if alarm else ""),
            str(event.step) if event.step is not None else DASH,
            event.message,
        )
    return table


class EventsView(Static):
    def show(self, run_events: Sequence[Event], trainer_events: Sequence[Event]) -> None:
        self.update(events_renderable(run_events, trainer_events))
