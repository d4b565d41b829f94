"""The registry's facts about one run (a RunView), as a key/value grid.

These are the daemon's own records: where the run lives, which launch is the
active one (nonce, pid), how it ended (exit code, message). A stale run keeps
its identity here but its figures are blanked, as in the runs table. The
surface's class and, for a job that is not training, its kind (a diagnose job
names the run it replays) are part of the run's identity too; for a training
run, its mode (a full fine-tune or a LoRA adapter, and how).
"""

from __future__ import annotations

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from qwen_daemon.protocol import RunView, kind_info
from qwen_daemon.protocol.display import SCREEN, is_live
from qwen_tui.format import DASH, health_text, kind_text, state_text, surface_class_text


def key_value_grid() -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    return grid


def run_facts(view: RunView, now: float | None = None) -> RenderableType:
    stale = view.health == "stale"
    live = is_live(view)
    grid = key_value_grid()
    grid.add_row("run", Text(view.name, style="bold"))
    surface = Text(f"{view.lane} / {view.surface} (")
    surface.append_text(surface_class_text(view.surface_class))
    surface.append(")")
    grid.add_row("lane / surface", surface)
    if not kind_info(view.kind).trains:
        grid.add_row("kind", kind_text(view))
    if view.mode_detail:  # what a training run trains: the full model, or a LoRA adapter
        grid.add_row("mode", Text(view.mode_detail, style="bold magenta" if view.mode == "lora" else ""))
    grid.add_row("runner", view.runner)
    state = state_text(view.state)
    if view.exit_code is not None:
        state.append(f"  (exit code {view.exit_code})", style="dim")
    grid.add_row("state", state)
    grid.add_row("health", health_text(view))
    if view.message:
        grid.add_row("message", Text(view.message, style="yellow"))
    grid.add_row("step", DASH if stale else SCREEN.step(view.step, view.max_steps))
    losses = f"{SCREEN.decimal(view.loss)} / {SCREEN.decimal(view.eval_loss)}"
    grid.add_row("loss / eval loss", DASH if stale else losses)
    grid.add_row("speed", f"{SCREEN.speed(view.steps_per_s, ' steps/s')}, ETA {SCREEN.eta(view)}" if live else DASH)
    grid.add_row("run dir", view.run_dir)
    grid.add_row("launch", f"nonce {view.nonce or DASH}, pid {view.pid if view.pid is not None else DASH}")
    created = SCREEN.clock(view.created_at, now)
    if view.ended_at is not None:
        lasted = SCREEN.duration(view.ended_at - view.created_at)
        grid.add_row("lifetime", f"{created} → {SCREEN.clock(view.ended_at, now)} ({lasted})")
    else:
        grid.add_row("created", created)
    return grid


class RunFactsView(Static):
    def show(self, view: RunView | None) -> None:
        self.update(run_facts(view) if view is not None else Text("run not listed by the daemon", style="dim"))
