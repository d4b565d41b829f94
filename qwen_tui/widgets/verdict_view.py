"""The promotion gate's verdict on screen: the overall answer, then criterion by criterion.

A trained model is a sidecar candidate only if every criterion passes
(DESIGN.md §1), so the panel leads with the answer and then says, for each
criterion in the gate's own order, what was measured against which threshold
and the gate's sentence on why. A criterion the verdict leaves out is shown
as not judged, never as passed. The gate job (RUN.gate) gets its own line:
whether a gate is running now, and how the last one ended.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from qwen_daemon.protocol import ACTIVE_STATES, Criterion, GateVerdict, RunView
from qwen_daemon.protocol.display import SCREEN
from qwen_train.gate.verdict import CRITERIA
from qwen_tui.actions import VERBS
from qwen_tui.format import DASH, state_text
from qwen_tui.widgets.run_facts import key_value_grid

RUN_GATE_KEY = VERBS["gate"].key


def _number(value: float | None) -> Text:
    return Text(DASH, style="dim") if value is None else Text(SCREEN.decimal(value))


def overall_renderable(verdict: GateVerdict, now: float | None = None) -> RenderableType:
    """PASSED or NOT PASSED, with when and on what it was decided."""
    headline = Text("PASSED", style="bold green") if verdict.passed else Text("NOT PASSED", style="bold red")
    failed = [c.name for c in verdict.criteria if not c.passed]
    if failed:
        headline.append(f"  {len(failed)} of {len(verdict.criteria)} criteria failed: {', '.join(failed)}",
                        style="red")
    grid = key_value_grid()
    grid.add_row("decided", f"{SCREEN.clock(verdict.decided_at, now)} ({SCREEN.age(verdict.decided_at, now)})")
    grid.add_row("checkpoint", f"step {verdict.checkpoint_step}")
    grid.add_row("model", verdict.model)
    grid.add_row("base model", verdict.base_model)
    grid.add_row("code revision", verdict.code_revision or DASH)
    return Group(headline, grid)


def _row(criterion: Criterion | None, name: str) -> tuple[Text, Text, Text, Text, Text]:
    if criterion is None:
        return (Text(name, style="bold"), Text("✗ not judged", style="bold red"), Text(DASH, style="dim"),
                Text(DASH, style="dim"), Text("the verdict does not list this criterion", style="red"))
    result = Text("✓ pass", style="green") if criterion.passed else Text("✗ FAIL", style="bold red")
    return (Text(name, style="bold"), result, _number(criterion.measured), _number(criterion.threshold),
            Text(criterion.detail))


def criteria_renderable(verdict: GateVerdict) -> RenderableType:
    """One row per criterion in the gate's order; any the gate added that this dashboard does not know, last."""
    table = Table(expand=True, box=None, padding=(0, 1), header_style="bold")
    for column, ratio in (("criterion", None), ("result", None), ("measured", None), ("threshold", None),
                          ("detail", 1)):
        table.add_column(column, ratio=ratio, no_wrap=ratio is None)
    by_name = {c.name: c for c in verdict.criteria}
    names = [*CRITERIA, *(c.name for c in verdict.criteria if c.name not in CRITERIA)]
    for name in names:
        table.add_row(*_row(by_name.get(name), name))
    return table


def no_verdict_renderable(run: str, why: str | None, error: str | None) -> RenderableType:
    """Where there is no verdict to show: none yet (the daemon's 404), or one that cannot be read."""
    if error is not None:
        return Group(Text(f"the gate verdict of {run} cannot be shown: {error}", style="bold red"),
                     Text(f"press {RUN_GATE_KEY} to run the gate again, which rewrites it"))
    lines = [Text(f"no gate verdict yet for {run}", style="bold yellow"),
             Text(f"press {RUN_GATE_KEY} to run the promotion gate (it asks first)")]
    if why:
        lines.append(Text(f"daemon: {why}", style="dim"))
    return Group(*lines)


def gate_job_renderable(run: str, view: RunView | None, job: RunView | None) -> RenderableType:
    """The run's state as the gate cares about it, and its gate job's last word."""
    grid = key_value_grid()
    if view is None:
        grid.add_row("run", Text(f"{run} is not in the daemon's run list", style="red"))
    else:
        line = state_text(view.state)
        if view.state in ACTIVE_STATES:
            line.append("  (the gate runs once the run has ended)", style="yellow")
        grid.add_row("run", line)
    if job is None:
        grid.add_row("gate job", Text(f"none has run for {run}", style="dim"))
        return grid
    state = state_text(job.state)
    if job.state in ACTIVE_STATES:
        state.append("  judging now: the verdict updates when it ends", style="yellow")
    grid.add_row("gate job", Text(job.name).append("  ").append(state))
    grid.add_row("said", job.message or DASH)
    grid.add_row("ended", SCREEN.clock(job.ended_at) if job.ended_at is not None else DASH)
    return grid
