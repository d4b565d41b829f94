"""A run's resources over time: one sparkline per metric from the daemon's series, gaps drawn as gaps.

The daemon downsamples (GET /runs/{name}/resources) into buckets shared by
every metric, and this draws one glyph per bucket, so the columns line up:
a coverage line on top ('█' sampled, '·' a gap, '↻' where a resumed launch
starts) and under each metric's label its line of block glyphs. A bucket
in a gap with no sample is '·', never a bar: an empty stretch must not read
as zero. Textual's Sparkline is not used here because it takes numbers
only and re-buckets them to its own width, which would either hide a gap
inside a bar or need a number to stand for it.

Each label carries what the line cannot: the newest value, the run's median
(from the resource summary, over its whole life) and the peak, and the scale
the bars are drawn to (0 to 100% for percentages, 0 to the peak otherwise,
so a flat line is a steady load and not magnified noise).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.text import Text
from textual.widgets import Static

from qwen_daemon.protocol import MetricSeries, ResourceBucket, ResourceSummary, RunResources
from qwen_daemon.protocol.display import SCREEN, metric_label
from qwen_tui.format import DASH

BARS = "▁▂▃▄▅▆▇█"
GAP = "·"
RELAUNCH = "↻"
LABEL_WIDTH = 22
_ORDER = (
    re.compile(r"^cpu_percent$"), re.compile(r"^ram_used_bytes$"), re.compile(r"^gpu\d+_busy_percent$"),
    re.compile(r"^gpu\d+_vram_used_bytes$"), re.compile(r"^run_cpu_percent$"), re.compile(r"^run_pss_bytes$"),
    re.compile(r"^run_rss_bytes$"),
    re.compile(r"^run_gpu_memory_bytes$"), re.compile(r"^run_gpu\d+_memory_bytes$"),
)


def metric_order(name: str) -> tuple[int, str]:
    """Host figures first (CPU, RAM, then each GPU), then the run's own share; unknown names last."""
    for rank, pattern in enumerate(_ORDER):
        if pattern.match(name):
            return rank, name
    return len(_ORDER), name


def coverage_line(buckets: Sequence[ResourceBucket]) -> Text:
    """One cell per bucket: sampled, in a gap, or where a later launch (a resume) starts."""
    text = Text(no_wrap=True, overflow="crop")
    for bucket in buckets:
        if bucket.relaunch:
            text.append(RELAUNCH, style="bold cyan")
        elif bucket.gap:
            text.append(GAP if bucket.samples == 0 else "▒", style="bold red" if bucket.samples == 0 else "yellow")
        else:
            text.append("█", style="green")
    return text


def scale_top(name: str, peaks: Sequence[float]) -> float:
    top = max(peaks, default=0.0)
    return max(top, 100.0) if name.endswith("_percent") else top


def spark_line(name: str, series: MetricSeries, buckets: Sequence[ResourceBucket]) -> Text:
    """One glyph per bucket: a bar for the median, '·' for a gap, blank where the metric was not reported."""
    top = scale_top(name, [v for v in series.max if v is not None])
    text = Text(no_wrap=True, overflow="crop")
    for value, bucket in zip(series.median, buckets, strict=False):
        if value is None:
            text.append(GAP if bucket.gap else " ", style="bold red")
            continue
        level = round(value / top * (len(BARS) - 1)) if top > 0 else 0
        text.append(BARS[min(max(level, 0), len(BARS) - 1)], style="yellow" if bucket.gap else "cyan")
    return text


def metric_header(name: str, series: MetricSeries, summary: ResourceSummary | None) -> Text:
    stats = summary.metrics.get(name) if summary is not None else None
    peaks = [v for v in series.max if v is not None]
    text = Text(f"{metric_label(name):<{LABEL_WIDTH}}", style="bold")
    text.append(f"now {SCREEN.metric(name, series.last) if series.last is not None else DASH}")
    text.append(f"   median {SCREEN.metric(name, stats.median) if stats is not None else DASH}")
    text.append(f"   peak {SCREEN.metric(name, max(peaks)) if peaks else DASH}")
    text.append(f"   (bars 0–{SCREEN.metric(name, scale_top(name, peaks))})", style="dim")
    return text


def series_caption(resources: RunResources) -> Text:
    """Counts, what a point is, the gaps and resumes, and the wall-clock span (between launches left out)."""
    buckets = resources.buckets
    per = resources.samples / len(buckets) if buckets else 0.0
    gaps = len(resources.gaps)
    relaunches = sum(b.relaunch for b in buckets)
    text = Text(f"{len(buckets)} points, {resources.samples} samples every {resources.period_s:g}s "
                f"(each point the median of ~{per:.0f}; peaks are the max)")
    text.append(f"   {gaps} gap{'s' if gaps != 1 else ''}", style="bold red" if gaps else "green")
    if relaunches:
        text.append(f"   {relaunches} resume{'s' if relaunches != 1 else ''} {RELAUNCH}", style="cyan")
    text.append(f"   {SCREEN.clock(buckets[0].start)} → {SCREEN.clock(buckets[-1].end)}", style="dim")
    return text


def series_renderable(resources: RunResources, summary: ResourceSummary | None = None) -> RenderableType:
    if not resources.buckets:
        return Text("no launch of this run yet: nothing sampled", style="dim")
    parts: list[RenderableType] = [series_caption(resources)]
    pad = " " * LABEL_WIDTH
    parts.append(Text.assemble((f"{'coverage':<{LABEL_WIDTH}}", "bold"), coverage_line(resources.buckets)))
    for name in sorted(resources.metrics, key=metric_order):
        series = resources.metrics[name]
        parts.append(metric_header(name, series, summary))
        parts.append(Text.assemble(pad, spark_line(name, series, resources.buckets)))
    if not resources.metrics:
        parts.append(Text("no samples in any launch of this run: the sampler was not running", style="bold red"))
    if resources.gpu_note:
        parts.append(Text(resources.gpu_note, style="yellow"))
    return Group(*parts)


class ResourceSeriesView(Static):
    """Keeps the last series and summary: the series comes every few polls, the summary with every detail."""

    resources: RunResources | None = None
    error: str | None = None
    summary: ResourceSummary | None = None

    def show_series(self, resources: RunResources | None, error: str | None) -> None:
        self.resources, self.error = resources, error
        self._draw()

    def show_summary(self, summary: ResourceSummary | None) -> None:
        self.summary = summary
        if self.resources is not None:
            self._draw()

    def _draw(self) -> None:
        if self.error is not None:
            self.update(Text(f"no resource series: {self.error}", style="bold red"))
        elif self.resources is None:
            self.update(Text("loading…", style="dim"))
        else:
            self.update(series_renderable(self.resources, self.summary))
