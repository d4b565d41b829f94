"""The durable checkpoints a run keeps: what a resume would start from, and what each one holds.

One row per checkpoint in the run dir, oldest first as the daemon lists
them: step, when it was written (and how long ago), its size on disk, and
its data cursor (epoch, and batch position out of the epoch's batches). The
newest is marked as the resume target, because that is the one the trainer
takes; when that one is broken the panel says a resume would refuse it
rather than quietly point at an older one. A checkpoint the daemon could not
read is a row with its error in place of the figures it lacks.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from qwen_daemon.protocol import CheckpointView, RunView, kind_info
from qwen_daemon.protocol.display import SCREEN
from qwen_tui.format import DASH

RESUME_MARK = "▶ resume"


def _position(row: CheckpointView) -> str:
    if row.position is None:
        return DASH
    return f"{row.position}/{row.batches_per_epoch}" if row.batches_per_epoch is not None else str(row.position)


def checkpoints_table(rows: Sequence[CheckpointView], now: float | None = None) -> Table:
    table = Table(box=None, padding=(0, 2), expand=False)
    table.add_column("", no_wrap=True)
    for label in ("step", "written", "age", "size", "epoch", "batch"):
        table.add_column(label, justify="right", no_wrap=True)
    table.add_column("problem")
    for row in rows:
        table.add_row(
            Text(RESUME_MARK, style="bold green") if row.resume else "",
            str(row.step) if row.step is not None else DASH,
            SCREEN.clock(row.created_at, now) if row.created_at is not None else DASH,
            SCREEN.age(row.created_at, now) if row.created_at is not None else DASH,
            SCREEN.size(row.size_bytes),
            str(row.epoch) if row.epoch is not None else DASH,
            _position(row),
            Text(row.error, style="bold red") if row.error else Text("ok", style="green"),
        )
    return table


def checkpoints_renderable(
    rows: Sequence[CheckpointView], error: str | None = None, view: RunView | None = None, now: float | None = None
) -> RenderableType:
    if error is not None:
        return Text(f"cannot list the checkpoints: {error}", style="bold red")
    if not rows:
        info = kind_info(view.kind) if view is not None else None
        if info is not None and not info.trains and info.resumes is not None:
            return Text(f"a {info.kind} job keeps no checkpoints (a resume continues {info.resumes})", style="dim")
        return Text("no durable checkpoint kept yet: a resume would start from step 0", style="dim")
    parts: list[RenderableType] = [Text(f"{len(rows)} kept, {SCREEN.size(sum(r.size_bytes for r in rows))} on disk")]
    parts.append(checkpoints_table(rows, now))
    target = next((row for row in rows if row.resume), None)
    if target is not None and target.error:
        parts.append(Text(f"a resume would refuse {target.name}, the newest: {target.error}", style="bold red"))
    return Group(*parts)


class CheckpointsView(Static):
    def show(self, rows: Sequence[CheckpointView], error: str | None, view: RunView | None) -> None:
        self.update(checkpoints_renderable(rows, error, view))
