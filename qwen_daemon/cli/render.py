"""Plain-text views of API answers for the `qwen-daemon` client commands.

Kept apart from the CLI's argument handling so the wording can change
without touching the plumbing. Anything the daemon did not know is shown as
'-', never as 0.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from qwen_daemon.protocol import HostView, ResourceSummary, RunDetail, RunView

_DASH = "-"


def when(stamp: float | None) -> str:
    return _DASH if stamp is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def number(value: float | None, digits: int = 4) -> str:
    return _DASH if value is None else f"{value:.{digits}g}"


def gib(value: float | None) -> str:
    return _DASH if value is None else f"{value / 2**30:.1f} GiB"


def _metric(name: str, value: float) -> str:
    return gib(value) if name.endswith("_bytes") else f"{value:.1f}"


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _step(view: RunView) -> str:
    if view.step is None:
        return _DASH
    return f"{view.step}/{view.max_steps}" if view.max_steps else str(view.step)


def _note(view: RunView) -> str:
    return view.stale_reason or view.message or ""


def runs_table(runs: Sequence[RunView]) -> str:
    if not runs:
        return "no runs yet: launch one with `qwen-daemon launch SPEC_FILE`"
    header = ("NAME", "KIND", "STATE", "HEALTH", "STEP", "LOSS", "EVAL", "LANE", "SURFACE", "NOTE")
    rows = [
        (v.name, v.kind, v.state, v.health, _step(v), number(v.loss), number(v.eval_loss), v.lane, v.surface,
         _note(v))
        for v in runs
    ]
    return table([header, *rows])


def summary_lines(summary: ResourceSummary) -> list[str]:
    lines = [f"resources: {summary.samples} samples, {when(summary.first)} .. {when(summary.last)}"]
    if summary.gpu_note:
        lines.append(f"  {summary.gpu_note}")
    if summary.metrics:
        rows: list[tuple[str, ...]] = [("  METRIC", "MEDIAN", "MIN", "MAX", "P95")]
        for name, stats in summary.metrics.items():
            values = (stats.median, stats.min, stats.max, stats.p95)
            rows.append((f"  {name}", *(_metric(name, v) for v in values)))
        lines.append(table(rows))
    for gap in summary.gaps:
        lines.append(f"  gap: no samples {when(gap.start)} .. {when(gap.end)} ({gap.end - gap.start:.0f} s)")
    return lines


def run_detail(detail: RunDetail) -> str:
    view = detail.run
    facts = [
        ("run", view.name), ("kind", view.kind),
        ("judges run" if view.kind == "gate" else "replays run", view.parent or ""), ("state", view.state),
        ("health", view.health),
        ("stale because", view.stale_reason or ""), ("lane", view.lane), ("surface", view.surface),
        ("runner", view.runner), ("pid", _DASH if view.pid is None else str(view.pid)),
        ("nonce", view.nonce or _DASH), ("run dir", view.run_dir), ("created", when(view.created_at)),
        ("ended", when(view.ended_at)), ("exit code", _DASH if view.exit_code is None else str(view.exit_code)),
        ("step", _step(view)), ("loss", number(view.loss)), ("eval loss", number(view.eval_loss)),
        ("steps/s", number(view.steps_per_s)), ("message", view.message or ""),
    ]
    lines = [f"{key + ':':15} {value}" for key, value in facts if value]
    lines.extend(summary_lines(detail.summary))
    lines.extend(checkpoint_lines(detail))
    if detail.events:
        lines.append("events:")
        lines.extend(f"  {when(e.time)}  {e.kind:10} {e.message}" for e in detail.events[-20:])
    return "\n".join(lines)


def checkpoint_lines(detail: RunDetail) -> list[str]:
    """Kept checkpoints, oldest first; the one a resume would use is marked, a broken one says why."""
    if detail.checkpoints_error:
        return [f"checkpoints: {detail.checkpoints_error}"]
    if not detail.checkpoints:
        return []
    lines = ["checkpoints kept:"]
    for c in detail.checkpoints:
        cursor = _DASH if c.epoch is None else f"epoch {c.epoch} batch {c.position}/{c.batches_per_epoch}"
        mark = "  <- resume" if c.resume else ""
        problem = f"  BROKEN: {c.error}" if c.error else ""
        size = gib(c.size_bytes) if c.size_bytes >= 2**30 else f"{c.size_bytes / 2**20:.1f} MiB"
        lines.append(f"  {c.name}  {when(c.created_at)}  {size}  {cursor}{mark}{problem}")
    return lines


def host_view(host: HostView) -> str:
    sampler = host.sampler
    alive = "alive" if sampler.alive else "NOT ALIVE"
    lines = [f"sampler: {alive}, every {sampler.period_s:g} s, last sample {when(sampler.last_sample)}"]
    if sampler.gpu_note:
        lines.append(f"  {sampler.gpu_note}")
    sample = host.sample
    if sample is not None:
        lines.append(f"cpu: {sample.cpu_percent:.1f} %")
        lines.append(f"ram: {gib(sample.ram_used_bytes)} of {gib(sample.ram_total_bytes)}")
        for gpu in sample.gpus:
            lines.append(
                f"gpu{gpu.index} {gpu.name}: {gpu.busy_percent:.0f} % busy, "
                f"{gib(gpu.vram_used_bytes)} of {gib(gpu.vram_total_bytes)}"
            )
    return "\n".join(lines)
