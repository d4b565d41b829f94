"""A run's listening scores over its checkpoints, against the base model, with the best checkpoint marked.

One row per score (protocol.scores.COLUMNS, in their order): its judge, the
base model's value (the line every checkpoint is read against), a trend with one
glyph per scored checkpoint (its height the value among all of them and the
base's; green where it beats the base, red where it is worse, so the line reads
against the base at a glance), then the newest checkpoints' values, coloured
the same way, the best checkpoint's column always shown and marked ★. The best
is the daemon's, by the rule every client shares (BEST_RULE, named on screen).
A score nobody measured is a dash, and why is said below the table. The last
line is the scoring job's: scoring now, queued for the GPU and why, or how its
last launch ended. The points come from the run's history (GET .../history),
which the detail screen polls anyway.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from qwen_daemon.protocol import ACTIVE_STATES, BEST_RULE, RunHistory, RunView, ScorePoint
from qwen_daemon.protocol.display import SCREEN
from qwen_daemon.protocol.scores import COLUMNS, ScoreColumn, compare, judge_name, notes_by_reason, value
from qwen_tui.format import DASH, state_text

BEST_MARK = "★"
BLOCKS = "▁▂▃▄▅▆▇█"
MAX_COLUMNS = 6  # the newest checkpoints shown as figures; the trend has them all
STYLES = {1: "green", -1: "red", 0: "", None: ""}


def trend(points: Sequence[ScorePoint], column: ScoreColumn, base: float | None) -> Text:
    """One block per checkpoint, scaled over the checkpoints' and the base's values, coloured against the base."""
    values = [value(p, column) for p in points]
    known = [v for v in [*values, base] if v is not None]
    low, high = (min(known), max(known)) if known else (0.0, 0.0)
    text = Text()
    for measured in values:
        if measured is None:
            text.append("·", style="dim")
            continue
        level = round((measured - low) / (high - low) * (len(BLOCKS) - 1)) if high > low else len(BLOCKS) // 2
        text.append(BLOCKS[level], style=STYLES[compare(column, measured, base)])
    return text


def shown_steps(points: Sequence[ScorePoint], best: int | None) -> list[ScorePoint]:
    """The newest MAX_COLUMNS checkpoints, and the best one wherever it is."""
    shown = list(points[-MAX_COLUMNS:])
    chosen = next((p for p in points if p.step == best), None)
    if chosen is not None and chosen not in shown:
        shown = sorted([chosen, *shown[1:]], key=lambda p: p.step or 0)
    return shown


def _figure(column: ScoreColumn, point: ScorePoint, base: float | None, best: bool) -> Text:
    measured = value(point, column)
    if measured is None:
        return Text(DASH, style="dim")
    style = STYLES[compare(column, measured, base)] + (" bold" if best else "")
    return Text(SCREEN.decimal(measured, 3), style=style.strip())


def scores_table(points: Sequence[ScorePoint], base: ScorePoint | None, best: int | None) -> Table:
    every = [*points, *([base] if base is not None else [])]
    shown = shown_steps(points, best)
    table = Table(box=None, padding=(0, 1), header_style="bold", expand=False)
    for label, justify in (("score", "left"), ("judge", "left"), ("base", "right"), ("trend", "left")):
        table.add_column(label, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for point in shown:
        mark = f"{BEST_MARK} {point.step}" if point.step == best else str(point.step)
        table.add_column(Text(mark, style="bold yellow" if point.step == best else ""), justify="right",
                         no_wrap=True)
    for column in COLUMNS:
        base_value = value(base, column) if base is not None else None
        table.add_row(Text(column.label, style="bold"), Text(judge_name(column, every), style="dim"),
                      Text(SCREEN.decimal(base_value, 3)) if base_value is not None else Text(DASH, style="dim"),
                      trend(points, column, base_value),
                      *(_figure(column, p, base_value, p.step == best) for p in shown))
    return table


def headline(points: Sequence[ScorePoint], base: ScorePoint | None, best: int | None) -> Text:
    text = Text(f"{len(points)} checkpoint{'s' if len(points) != 1 else ''} scored")
    text.append("; base model scored" if base is not None else "; the base model not yet", style="")
    if best is not None:
        text.append(f";  best {BEST_MARK} step {best}", style="bold yellow")
        text.append(f"\n{BEST_MARK} best by rule: {BEST_RULE}", style="dim")
    return text


def notes_text(points: Sequence[ScorePoint]) -> Text | None:
    """Why scores were not measured, each reason once, with the checkpoints it applies to."""
    reasons = notes_by_reason(points)
    if not reasons:
        return None
    text = Text("not measured:", style="yellow")
    for (name, why), where in reasons.items():
        text.append(f"\n  {name} ({', '.join(where)}): {why}", style="dim")
    return text


def job_text(job: RunView | None) -> Text:
    """The scoring job's line: what it does now, or how it last ended."""
    if job is None:
        return Text("scoring: no job yet (the daemon starts one on the run's next durable checkpoint)", style="dim")
    text = Text(f"scoring job {job.name}: ")
    text.append_text(state_text(job.state))
    if job.state in ACTIVE_STATES:
        text.append("  listening now: the table grows as it scores", style="cyan")
    if job.message:
        text.append(f"  {job.message}", style="yellow" if job.state == "queued" else "dim")
    return text


def scores_renderable(history: RunHistory | None, error: str | None, job: RunView | None,
                      scored: bool = True) -> RenderableType:
    """`scored`: the run's spec turns scores on (the daemon scores it); otherwise only scoring by hand fills this."""
    if history is None:
        return Text(f"the scores cannot be shown: {error}", style="bold red") if error else Text("loading…",
                                                                                               style="dim")
    points, base, best = history.scores, history.base_scores, history.best_score_step
    if not points and base is None:
        if not scored and job is None:
            return Text("no listening scores: this run's spec does not turn them on (scores.enabled); "
                        "`qwen-train score RUN_DIR` scores it by hand", style="dim")
        return Group(Text("no listening scores yet: each durable checkpoint is scored as the run writes it",
                          style="dim"), job_text(job))
    notes = notes_text([*([base] if base is not None else []), *points])
    parts: list[RenderableType] = [headline(points, base, best), scores_table(points, base, best)]
    return Group(*parts, *([notes] if notes is not None else []), job_text(job))


class ScoresView(Static):
    def show(self, history: RunHistory | None, error: str | None, job: RunView | None, scored: bool = True) -> None:
        self.update(scores_renderable(history, error, job, scored))
