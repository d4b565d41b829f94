"""Plain-text views of API answers for the `qwen-daemon` client commands.

Kept apart from the CLI's argument handling so the wording can change
without touching the plumbing. The values themselves read as the dashboard
reads them (protocol/display.py, the PLAIN medium): anything the daemon did
not know is shown as '-', never as 0. What is left here is layout.
"""

from __future__ import annotations

from collections.abc import Sequence

from qwen_daemon.protocol import HostView, ResourceSummary, RunDetail, RunView, kind_info
from qwen_daemon.protocol.display import PLAIN
from qwen_daemon.protocol.gpu_text import gpu_line, summary_counted
from qwen_daemon.protocol.resources import gpu_backend_text

_DASH = PLAIN.unknown


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _note(view: RunView) -> str:
    return view.stale_reason or view.message or ""


def runs_table(runs: Sequence[RunView]) -> str:
    if not runs:
        return "no runs yet: launch one with `qwen-daemon launch SPEC_FILE`"
    header = ("NAME", "KIND", "MODE", "STATE", "HEALTH", "STEP", "LOSS", "EVAL", "LANE", "SURFACE", "NOTE")
    rows = [
        (v.name, v.kind, v.mode if v.mode_detail else "", v.state, v.health, PLAIN.step(v.step, v.max_steps),
         PLAIN.decimal(v.loss),
         PLAIN.decimal(v.eval_loss), v.lane, v.surface, _note(v))
        for v in runs
    ]
    return table([header, *rows])


def summary_lines(summary: ResourceSummary) -> list[str]:
    span = f"{PLAIN.timestamp(summary.first)} .. {PLAIN.timestamp(summary.last)}"
    lines = [f"resources: {summary.samples} samples, {span}"]
    if summary.gpu_note:
        lines.append(f"  {summary.gpu_note}")
    lines += [f"  {line}" for line in summary_counted(summary)]
    if summary.metrics:
        rows: list[tuple[str, ...]] = [("  METRIC", "MEDIAN", "MIN", "MAX", "P95")]
        for name, stats in summary.metrics.items():
            values = (stats.median, stats.min, stats.max, stats.p95)
            rows.append((f"  {name}", *(PLAIN.metric(name, v) for v in values)))
        lines.append(table(rows))
    for gap in summary.gaps:
        span = f"{PLAIN.timestamp(gap.start)} .. {PLAIN.timestamp(gap.end)}"
        lines.append(f"  gap: no samples {span} ({PLAIN.duration(gap.end - gap.start)})")
    return lines


def detail_text(detail: RunDetail) -> str:
    view = detail.run
    facts = [
        ("run", view.name), ("kind", view.kind),
        (kind_info(view.kind).parent_role or "parent", view.parent or ""), ("state", view.state),
        ("health", view.health),
        ("stale because", view.stale_reason or ""), ("lane", view.lane), ("mode", view.mode_detail or ""),
        ("surface", view.surface),
        ("runner", view.runner), ("pid", _DASH if view.pid is None else str(view.pid)),
        ("nonce", view.nonce or _DASH), ("run dir", view.run_dir), ("created", PLAIN.timestamp(view.created_at)),
        ("ended", PLAIN.timestamp(view.ended_at)),
        ("exit code", _DASH if view.exit_code is None else str(view.exit_code)),
        ("step", PLAIN.step(view.step, view.max_steps)), ("loss", PLAIN.decimal(view.loss)),
        ("eval loss", PLAIN.decimal(view.eval_loss)), ("steps/s", PLAIN.speed(view.steps_per_s, suffix="")),
        ("message", view.message or ""),
    ]
    lines = [f"{key + ':':15} {value}" for key, value in facts if value]
    lines.extend(summary_lines(detail.summary))
    lines.extend(checkpoint_lines(detail))
    if detail.events:
        lines.append("events:")
        lines.extend(f"  {PLAIN.timestamp(e.time)}  {e.kind:10} {e.message}" for e in detail.events[-20:])
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
        written = f"{PLAIN.timestamp(c.created_at)}  {PLAIN.size(c.size_bytes)}"
        lines.append(f"  {c.name}  {written}  {cursor}{mark}{problem}")
    return lines


def host_view(host: HostView) -> str:
    sampler = host.sampler
    alive = "alive" if sampler.alive else "NOT ALIVE"
    lines = [f"sampler: {alive}, every {sampler.period_s:g} s, last sample {PLAIN.timestamp(sampler.last_sample)}"]
    lines.append(f"gpu backend: {gpu_backend_text(sampler.gpu_backend)}")
    if sampler.gpu_note:
        lines.append(f"  {sampler.gpu_note}")
    sample = host.sample
    if sample is not None:
        lines.append(f"cpu: {PLAIN.percent(sample.cpu_percent)}")
        lines.append(f"ram: {PLAIN.size(sample.ram_used_bytes)} of {PLAIN.size(sample.ram_total_bytes)}")
        lines += [f"gpu{gpu.index} {gpu_line(gpu, PLAIN)}" for gpu in sample.gpus]
    return "\n".join(lines)
