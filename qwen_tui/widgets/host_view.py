"""The host in full: sampler liveness, live CPU/RAM/GPU/VRAM, per-run usage, bind roots.

Every resource figure depends on the sampler, so its panel comes first: alive
or not, how old the last sample is, where samples go (journald, or why not),
which GPU reader it uses (nvml, amdsmi, sysfs or none: how the GPU figures
were gathered, or why there are none), and the recent gaps without samples,
listed as gaps. The live figures carry
sparklines of the samples seen since the dashboard opened (the API serves only
the newest), labelled with that span. Bind roots show the daemon's verdict per
root with its own words for what is wrong and how to fix it; a probe result
(a container wrote through each root) is shown with when it was taken.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.containers import Vertical
from textual.widgets import Label, Sparkline

from qwen_daemon.protocol import BindRootsView, GpuSample, ResourceSample, SamplerHealth
from qwen_daemon.protocol.display import SCREEN
from qwen_daemon.protocol.gpu_text import ASLEEP_WORDS, COUNTED_WORDS, vram_text
from qwen_daemon.protocol.resources import gpu_backend_text
from qwen_tui.actions import Outcome
from qwen_tui.widgets.run_facts import key_value_grid
from qwen_tui.widgets.summary_view import gaps_text


def sampler_renderable(sampler: SamplerHealth, now: float | None = None) -> RenderableType:
    grid = key_value_grid()
    alive = Text("alive", style="bold green") if sampler.alive else Text("NOT RUNNING", style="bold red")
    grid.add_row("sampler", alive)
    grid.add_row("period", f"every {sampler.period_s:g}s")
    grid.add_row("last sample", f"{SCREEN.clock(sampler.last_sample, now)} ({SCREEN.age(sampler.last_sample, now)})")
    grid.add_row("journal", sampler.journal or Text("not reported", style="dim"))
    grid.add_row("GPU backend", Text(gpu_backend_text(sampler.gpu_backend),
                                     style="yellow" if sampler.gpu_backend in (None, "none") else ""))
    if sampler.gpu_note:
        grid.add_row("GPU", Text(sampler.gpu_note, style="yellow"))
    gaps = gaps_text(sampler.gaps, now) if sampler.gaps else Text("no recent gaps", style="green")
    return Group(grid, gaps)


@dataclass(frozen=True)
class MetricRow:
    """One live figure: its latest value in words and the values behind its sparkline."""

    key: str
    title: str
    now: str
    values: list[float]
    fmt: Callable[[float], str]


def _gpu_name(gpu: GpuSample) -> str:
    return f"{gpu.name} ({gpu.arch})" if gpu.arch else gpu.name


def metric_rows(samples: Sequence[ResourceSample]) -> list[MetricRow]:
    if not samples:
        return []
    latest = samples[-1]
    rows = [
        MetricRow("cpu", "CPU", SCREEN.percent(latest.cpu_percent), [s.cpu_percent for s in samples], SCREEN.percent),
        MetricRow(
            "ram",
            "RAM",
            f"{SCREEN.size(latest.ram_used_bytes)} of {SCREEN.size(latest.ram_total_bytes)}",
            [float(s.ram_used_bytes) for s in samples],
            SCREEN.size,
        ),
    ]
    for gpu in latest.gpus:
        same = [g for s in samples for g in s.gpus if g.index == gpu.index]
        rows.append(MetricRow(f"gpu{gpu.index}-busy", f"GPU{gpu.index} {_gpu_name(gpu)} busy", _busy_now(gpu),
                              [g.busy_percent for g in same if g.busy_percent is not None], SCREEN.percent))
        vram = [float(g.vram_used_bytes) for g in same if g.vram_read_now and g.vram_used_bytes is not None]
        rows.append(MetricRow(f"gpu{gpu.index}-vram", f"GPU{gpu.index} VRAM", _vram_now(gpu), vram, SCREEN.size))
    return rows


def _busy_now(gpu: GpuSample) -> str:
    """The busy figure, or why there is none: asleep, or unread with the reader's reason."""
    if gpu.busy_percent is not None:
        return SCREEN.percent(gpu.busy_percent)
    return ASLEEP_WORDS if gpu.sleeping else f"unread: {gpu.unread.get('busy_percent', 'not read')}"


def _vram_now(gpu: GpuSample) -> str:
    """The VRAM figures (a sleeping card's last ones, with their time), or why there are none."""
    if gpu.vram_used_bytes is not None:
        return vram_text(gpu, SCREEN)
    if gpu.sleeping:
        return "never read awake (asleep)"
    return "unread: " + "; ".join(why for metric, why in gpu.unread.items() if metric != "busy_percent")


def metric_label(row: MetricRow, span_s: float) -> Text:
    text = Text(f"{row.title} ", style="bold")
    text.append(row.now)
    if not row.values:
        text.append("   no readings in the samples seen", style="dim")
        return text
    text.append(
        f"   last {len(row.values)} samples over {SCREEN.duration(span_s)}: "
        f"min {row.fmt(min(row.values))}, max {row.fmt(max(row.values))}",
        style="dim",
    )
    return text


def run_usage_renderable(sample: ResourceSample | None) -> RenderableType:
    """Each run's own share in the newest sample (its processes; a container's through cgroups).

    GPU engine is the run's busiest-engine share per GPU, known only where the
    reader has per-process engine time (DRM fdinfo); elsewhere it is unknown, not 0.
    GPU memory is VRAM, or on an APU VRAM and GTT, and then says "(VRAM+GTT)".
    """
    if sample is None or not sample.runs:
        return Text("no run's processes in the newest sample", style="dim")
    table = Table(box=None, padding=(0, 2), expand=False)
    for label in ("run", "processes", "CPU", "RAM", "GPU memory", "GPU processes", "GPU engine"):
        table.add_column(label, justify="left" if label == "run" else "right", style="bold" if label == "run" else "")
    counted = {str(gpu.index): gpu.process_memory for gpu in sample.gpus}
    for name, usage in sorted(sample.runs.items()):
        gpu = SCREEN.size(usage.gpu_memory_bytes) if usage.gpu_memory_bytes is not None else "not attributed"
        beyond = sorted({counted.get(index, "vram") for index in usage.gpu_memory_per_gpu} - {"vram"})
        gpu += "".join(f" ({COUNTED_WORDS[what]})" for what in beyond)
        engine = ", ".join(f"GPU{index} {SCREEN.percent(share)}"
                           for index, share in usage.gpu_engine_percent_per_gpu.items()) or SCREEN.unknown
        ram = f"{SCREEN.size(usage.ram_bytes)} {usage.ram_kind}"
        table.add_row(name, str(usage.processes), SCREEN.percent(usage.cpu_percent), ram, gpu,
                      str(usage.gpu_processes), engine)
    return table


def bind_roots_renderable(view: BindRootsView) -> RenderableType:
    if not view.roots:
        return Text("no bind roots configured: training containers see no host directories", style="yellow")
    parts: list[RenderableType] = []
    for root in view.roots:
        line = Text("ok      " if root.ok else "PROBLEM ", style="bold green" if root.ok else "bold red")
        line.append(root.path, style="bold")
        line.append(f"  from {root.source}" if root.source else "  (Docker sees it directly)", style="dim")
        if root.mounted_from:
            line.append(f"  mounted from {root.mounted_from}", style="dim")
        parts.append(line)
        parts.extend(Text(f"        {problem}", style="red") for problem in root.problems)
    return Group(*parts)


def probe_renderable(outcome: Outcome | None, at: float | None, now: float | None = None) -> RenderableType:
    if outcome is None:
        return Text("not probed yet: press p to have a container write through each root", style="dim")
    when = Text(f"probed {SCREEN.clock(at, now)} ({SCREEN.age(at, now)})", style="dim")
    if outcome.error is not None:
        return Group(when, Text(f"the probe could not run: {outcome.error}", style="bold red"))
    results = outcome.probe.results if outcome.probe is not None else []
    if not results:
        return Group(when, Text("no bind roots to probe", style="yellow"))
    lines = [
        Text.assemble(("ok    " if r.ok else "FAIL  ", "bold green" if r.ok else "bold red"), (r.path, "bold"),
                      f"  {r.detail}")
        for r in results
    ]
    return Group(when, *lines)


class HostMetrics(Vertical):
    """A label and a sparkline per live figure; GPU rows come and go with the GPUs reported."""

    def show(self, samples: Sequence[ResourceSample]) -> None:
        rows = metric_rows(samples)
        span = samples[-1].time - samples[0].time if samples else 0.0
        wanted = {row.key for row in rows}
        for child in list(self.children):
            if child.id is not None and child.id.split("--")[0] not in wanted and child.id != "no-sample":
                child.remove()
        if not rows:
            if not self.query("#no-sample"):
                self.mount(Label(Text("no host sample yet", style="dim"), id="no-sample"))
            return
        for hint in self.query("#no-sample"):
            hint.remove()
        for row in rows:
            found = self.query(f"#{row.key}--label")
            if found:
                label = found.only_one(Label)
                spark = self.query_one(f"#{row.key}--spark", Sparkline)
            else:
                label = Label(id=f"{row.key}--label")
                spark = Sparkline([], id=f"{row.key}--spark")
                self.mount(label, spark)
            label.update(metric_label(row, span))
            spark.data = row.values

