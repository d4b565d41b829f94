"""The runs table: one row per run, keyed by run name.

Rows are updated cell by cell under their run name rather than rebuilt, so the
cursor stays on the run the operator is looking at while figures change under
it. A run that is not live never shows a speed or an ETA, and a stale run shows
no figures at all: its health cell says "stale: <reason>" instead.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.widgets import DataTable

from qwen_daemon.protocol import RunView
from qwen_tui.format import (
    DASH,
    fmt_eta,
    fmt_float,
    fmt_speed,
    fmt_step,
    health_text,
    is_live,
    state_text,
)

COLUMNS: tuple[tuple[str, str], ...] = (
    ("name", "name"),
    ("lane", "lane"),
    ("surface", "surface"),
    ("state", "state"),
    ("health", "health"),
    ("step", "step"),
    ("loss", "loss"),
    ("eval_loss", "eval loss"),
    ("speed", "speed"),
    ("eta", "ETA"),
)


def run_cells(view: RunView) -> dict[str, Text]:
    """The row for one run, by column key; Text throughout, so no name is read as markup."""
    stale = view.health == "stale"
    live = is_live(view)

    def number(text: str) -> Text:
        return Text(DASH if stale else text, justify="right")

    return {
        "name": Text(view.name, style="bold"),
        "lane": Text(view.lane),
        "surface": Text(view.surface),
        "state": state_text(view.state),
        "health": health_text(view),
        "step": number(fmt_step(view.step, view.max_steps)),
        "loss": number(fmt_float(view.loss)),
        "eval_loss": number(fmt_float(view.eval_loss)),
        "speed": number(fmt_speed(view.steps_per_s) if live else DASH),
        "eta": number(fmt_eta(view)),
    }


class RunsTable(DataTable[Text]):
    """A DataTable that knows how to apply a run list in place."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True, fixed_columns=1)
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    def show_runs(self, runs: Iterable[RunView]) -> None:
        """Update rows in place, add new runs, drop runs the daemon no longer lists."""
        seen: set[str] = set()
        for view in runs:
            seen.add(view.name)
            cells = run_cells(view)
            if view.name in self.rows:
                for key, value in cells.items():
                    self.update_cell(view.name, key, value, update_width=True)
            else:
                self.add_row(*(cells[key] for key, _ in COLUMNS), key=view.name)
        for row_key in list(self.rows):
            if row_key.value not in seen:
                self.remove_row(row_key)

    @property
    def selected_name(self) -> str | None:
        """The run under the cursor, if there are any rows."""
        if self.row_count == 0:
            return None
        row_key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return row_key.value
