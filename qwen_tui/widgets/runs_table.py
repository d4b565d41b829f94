"""The runs table: one row per run, keyed by run name.

Rows are updated cell by cell under their run name rather than rebuilt, so the
cursor stays on the run the operator is looking at while figures change under
it. A run that is not live never shows a speed or an ETA, and a stale run shows
no figures at all: its health cell says "stale: <reason>" instead. The surface's
class sits beside the surface, since it says what may be done with the run.
The kind column appears only while a run is listed that is not a training run
(a preprocess job, or a diagnose job naming the run it replays).
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.widgets import DataTable

from qwen_daemon.protocol import RunView, kind_info
from qwen_daemon.protocol.display import SCREEN, is_live
from qwen_tui.format import DASH, health_text, kind_text, state_text, surface_class_text

COLUMNS: tuple[tuple[str, str], ...] = (
    ("name", "name"),
    ("lane", "lane"),
    ("surface", "surface"),
    ("class", "class"),
    ("state", "state"),
    ("health", "health"),
    ("step", "step"),
    ("loss", "loss"),
    ("eval_loss", "eval loss"),
    ("speed", "speed"),
    ("eta", "ETA"),
)
KIND = "kind"


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
        "class": surface_class_text(view.surface_class),
        "state": state_text(view.state),
        "health": health_text(view),
        "step": number(SCREEN.step(view.step, view.max_steps)),
        "loss": number(SCREEN.decimal(view.loss)),
        "eval_loss": number(SCREEN.decimal(view.eval_loss)),
        "speed": number(SCREEN.speed(view.steps_per_s) if live else DASH),
        "eta": number(SCREEN.eta(view)),
        KIND: kind_text(view),
    }


class RunsTable(DataTable[Text]):
    """A DataTable that knows how to apply a run list in place."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True, fixed_columns=1)
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    def show_runs(self, runs: Iterable[RunView]) -> None:
        """Update rows in place, add new runs, drop runs the daemon no longer lists."""
        views = list(runs)
        self._show_kind_column(any(not kind_info(view.kind).trains for view in views))
        columns = [key for key, _ in COLUMNS] + ([KIND] if self.kind_shown else [])
        seen: set[str] = set()
        for view in views:
            seen.add(view.name)
            cells = run_cells(view)
            if view.name in self.rows:
                for key in columns:
                    self.update_cell(view.name, key, cells[key], update_width=True)
            else:
                self.add_row(*(cells[key] for key in columns), key=view.name)
        for row_key in list(self.rows):
            if row_key.value not in seen:
                self.remove_row(row_key)

    @property
    def kind_shown(self) -> bool:
        return KIND in self.columns

    def _show_kind_column(self, wanted: bool) -> None:
        if wanted and not self.kind_shown:
            self.add_column("kind", key=KIND, default=Text(""))
        elif not wanted and self.kind_shown:
            self.remove_column(KIND)

    @property
    def selected_name(self) -> str | None:
        """The run under the cursor, if there are any rows."""
        if self.row_count == 0:
            return None
        row_key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return row_key.value
