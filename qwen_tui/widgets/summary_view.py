"""A run's resource summary: median/min/max/p95 per metric, and the gaps.

This is resource evidence (the promotion gate asks for it), so the view is
explicit about coverage: the sample count per metric, a timeline over the
run's sampled span with gaps drawn as gaps, each gap listed with its length,
and the daemon's GPU note (e.g. "no GPU: NVML library not found") where GPU
figures are absent. Nothing is ever filled in as zero.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from qwen_daemon.protocol import Gap, ResourceSummary
from qwen_daemon.protocol.display import SCREEN, metric_label
from qwen_daemon.protocol.gpu_text import summary_counted

TIMELINE_WIDTH = 48
MAX_GAPS_LISTED = 5


def coverage_bar(first: float, last: float, gaps: list[Gap], width: int = TIMELINE_WIDTH) -> Text:
    """One cell per slice of [first, last]: '█' sampled, '·' inside a gap."""
    text = Text()
    span = last - first
    if span <= 0:
        return Text("█" * width, style="green")
    slice_s = span / width
    for index in range(width):
        start = first + index * slice_s
        end = start + slice_s
        in_gap = any(gap.start < end and gap.end > start for gap in gaps)
        text.append("·" if in_gap else "█", style="red" if in_gap else "green")
    return text


def gaps_text(gaps: list[Gap], now: float | None = None) -> Text:
    total = sum(max(gap.end - gap.start, 0.0) for gap in gaps)
    text = Text(
        f"{len(gaps)} gap{'s' if len(gaps) != 1 else ''} without samples, {SCREEN.duration(total)} in all",
        style="bold red",
    )
    for gap in gaps[:MAX_GAPS_LISTED]:
        text.append(
            f"\n  {SCREEN.clock(gap.start, now)} → {SCREEN.clock(gap.end, now)} "
            f"({SCREEN.duration(gap.end - gap.start)})",
            style="red",
        )
    if len(gaps) > MAX_GAPS_LISTED:
        text.append(f"\n  … and {len(gaps) - MAX_GAPS_LISTED} more", style="red")
    return text


def metrics_table(summary: ResourceSummary) -> Table:
    table = Table(box=None, padding=(0, 2), expand=False)
    table.add_column("metric", style="bold")
    for label in ("samples", "median", "min", "max", "p95"):
        table.add_column(label, justify="right")
    for name, stats in summary.metrics.items():
        table.add_row(
            metric_label(name),
            str(stats.count),
            SCREEN.metric(name, stats.median),
            SCREEN.metric(name, stats.min),
            SCREEN.metric(name, stats.max),
            SCREEN.metric(name, stats.p95),
        )
    return table


def summary_renderable(summary: ResourceSummary, now: float | None = None) -> RenderableType:
    parts: list[RenderableType] = []
    if summary.samples == 0 or summary.first is None or summary.last is None:
        parts.append(Text("no resource samples for this run yet", style="dim"))
    else:
        parts.append(
            Text(
                f"{summary.samples} samples, {SCREEN.clock(summary.first, now)} → "
                f"{SCREEN.clock(summary.last, now)} ({SCREEN.duration(summary.last - summary.first)})"
            )
        )
        parts.append(Text.assemble("coverage ", coverage_bar(summary.first, summary.last, summary.gaps)))
        if summary.metrics:
            parts.append(metrics_table(summary))
        if summary.gaps:
            parts.append(gaps_text(summary.gaps, now))
        else:
            parts.append(Text("no gaps", style="green"))
    if summary.gpu_note:
        parts.append(Text(summary.gpu_note, style="yellow"))
    parts.extend(Text(line, style="cyan") for line in summary_counted(summary))
    return Group(*parts)


class ResourceSummaryView(Static):
    def show(self, summary: ResourceSummary | None) -> None:
        if summary is None:
            self.update(Text("no resource summary", style="dim"))
        else:
            self.update(summary_renderable(summary))
