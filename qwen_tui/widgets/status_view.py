"""The trainer's trusted status (status.json as the daemon vouches for it).

The daemon only passes on a status whose nonce is the active launch's and whose
heartbeat is fresh; when there is none, this view says why (the stale reason,
or that the first heartbeat has not arrived) instead of showing old figures.
The last eval is broken down per split and per held-out speaker, because a
language-expansion run is judged on speakers it has never heard. The cursor
check is coloured by its verdict: a reset or a rejection must not read like ok.
"""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from qwen_daemon.protocol import RunView
from qwen_daemon.protocol.display import SCREEN
from qwen_train.status import EvalResult, Losses, Status
from qwen_tui.format import DASH, cursor_verdict_text, state_text
from qwen_tui.widgets.run_facts import key_value_grid


def losses_text(losses: Losses | None) -> str:
    if losses is None:
        return DASH
    return (
        f"{SCREEN.decimal(losses.total)}  (talker {SCREEN.decimal(losses.talker)}, "
        f"code predictor {SCREEN.decimal(losses.code_predictor)})"
    )


def losses_table(title: str, rows: Mapping[str, Losses]) -> Table:
    table = Table(title=title, title_justify="left", expand=False, box=None, padding=(0, 2))
    table.add_column(title.split()[-1], style="bold")
    for label in ("total", "talker", "code pred."):
        table.add_column(label, justify="right")
    for name, losses in sorted(rows.items()):
        table.add_row(name, *(SCREEN.decimal(value) for value in (losses.total, losses.talker, losses.code_predictor)))
    return table


def eval_renderables(result: EvalResult) -> list[RenderableType]:
    parts: list[RenderableType] = []
    if result.per_split:
        parts.append(losses_table("eval per split", result.per_split))
    if result.per_speaker:
        parts.append(losses_table("eval per speaker", result.per_speaker))
    return parts


def no_status_reason(view: RunView | None) -> str:
    if view is None:
        return "no trusted status"
    if view.health == "stale":
        return f"no trusted status, the last one is stale: {view.stale_reason or 'reason not given'}"
    if view.health == "waiting":
        return "no trusted status yet: waiting for the trainer's first heartbeat"
    return "no trusted status: the run has ended"


def status_renderable(status: Status | None, view: RunView | None, now: float | None = None) -> RenderableType:
    if status is None:
        return Text(no_status_reason(view), style="yellow")
    grid = key_value_grid()
    grid.add_row("trainer state", state_text(status.state))
    grid.add_row("heartbeat", f"{SCREEN.clock(status.heartbeat, now)} ({SCREEN.age(status.heartbeat, now)})")
    where = f"{status.host}, pid {status.pid}"
    if status.container:
        where += f", container {status.container}"
    grid.add_row("where", where)
    grid.add_row("step / epoch", f"{SCREEN.step(status.step, status.max_steps)} / epoch {status.epoch}")
    grid.add_row("loss", losses_text(status.losses))
    grid.add_row("lr", SCREEN.lr(status.lr))
    for label, said in (("recipe", status.recipe), ("batching", status.batching), ("startup", status.startup)):
        if said:
            grid.add_row(label, said)
    if status.throughput is not None:
        grid.add_row(
            "throughput",
            f"{SCREEN.speed(status.throughput.steps_per_s, ' steps/s')}, {status.throughput.frames_per_s:.1f} frames/s",
        )
    else:
        grid.add_row("throughput", DASH)
    ckpt = status.last_checkpoint
    if ckpt is not None:
        grid.add_row(
            "last checkpoint",
            f"step {ckpt.step}, {SCREEN.clock(ckpt.written_at, now)} ({SCREEN.age(ckpt.written_at, now)})\n{ckpt.path}",
        )
    else:
        grid.add_row("last checkpoint", Text("none yet", style="dim"))
    result = status.last_eval
    if result is not None:
        grid.add_row("last eval", f"step {result.step}, {result.rows} rows: {losses_text(result.losses)}")
    else:
        grid.add_row("last eval", Text("none yet", style="dim"))
    grid.add_row("cursor check", cursor_verdict_text(status.cursor_check))
    if status.message:
        # An out-of-memory or full-disk end says what to change: as loud as the state it explains.
        loud = status.state in ("failed_oom", "failed_disk_full")
        grid.add_row("message", Text(status.message, style="bold red" if loud else "yellow"))
    parts: list[RenderableType] = [grid]
    if result is not None:
        parts.extend(eval_renderables(result))
    if status.non_finite_events:
        parts.append(Text("non-finite events", style="bold red"))
        for event in status.non_finite_events:
            step = f" step {event.step}" if event.step is not None else ""
            parts.append(Text(f"  {SCREEN.clock(event.time, now)}{step}  {event.message}", style="red"))
    return Group(*parts)


class TrustedStatusView(Static):
    def show(self, status: Status | None, view: RunView | None) -> None:
        self.update(status_renderable(status, view))
