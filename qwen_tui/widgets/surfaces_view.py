"""The lanes and surfaces board, and the audit log of class changes, as Rich renderables.

A surface's class is a rule the daemon enforces at launch (DESIGN.md §1), so
the board groups surfaces by class and states each class's rule beside it:
what may be launched where, and why a launch would be refused, before anyone
tries. A recovery surface says whether a passed promotion gate unblocked it.
Runs are counted per lane and per surface from the run list, and a surface
that runs name but the registry does not list is shown as such (the daemon
refuses launches on it). The audit log is newest first: who changed which
class, from what, and why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import get_args

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from qwen_daemon.protocol import ACTIVE_STATES, NEVER_LAUNCHED, AuditList, RunView, Surface, SurfaceList
from qwen_daemon.protocol.display import SCREEN
from qwen_train.spec import Lane
from qwen_tui.format import DASH, surface_class_text

CLASS_ORDER: tuple[str, ...] = ("mechanism", "recovery", "provenance", "legacy-readonly", "deprecated")

CLASS_RULES: dict[str, str] = {
    "mechanism": "bounded diagnosis experiments: launched",
    "recovery": "the fresh-start proof lane: blocked until a mechanism candidate passes the promotion gate",
    "provenance": "historical evidence, read-only: never launched",
    "legacy-readonly": "readable, never launched",
    "deprecated": "not for new work: never launched",
}
assert set(NEVER_LAUNCHED) <= set(CLASS_RULES), "a class the daemon refuses needs its rule worded here"

LANE_WORDS: dict[str, tuple[str, str]] = {
    "benchmark": ("evaluate, no training", "no data policy"),
    "single-speaker": ("adapt to one voice", "no data policy"),
    "language-expansion": (
        "many Swedish speakers; the base model stays a voice-cloning base",
        "needs a multi-speaker bundle with held-out speakers (checked at launch)",
    ),
}


def _counts(runs: Sequence[RunView], key: str) -> tuple[Counter[str], Counter[str]]:
    total: Counter[str] = Counter(getattr(view, key) for view in runs)
    active: Counter[str] = Counter(getattr(view, key) for view in runs if view.state in ACTIVE_STATES)
    return total, active


def _runs_cell(name: str, total: Counter[str], active: Counter[str]) -> str:
    if not total[name]:
        return DASH
    return f"{total[name]} ({active[name]} active)" if active[name] else str(total[name])


def lanes_table(runs: Sequence[RunView]) -> Table:
    """Every request lane, what it is for, the policy it sets, and its runs."""
    total, active = _counts(runs, "lane")
    table = Table(box=None, padding=(0, 2), expand=False)
    for label in ("lane", "for", "policy", "runs"):
        table.add_column(label, style="bold" if label == "lane" else "")
    for lane in get_args(Lane):
        purpose, policy = LANE_WORDS.get(lane, ("", ""))
        table.add_row(lane, purpose, policy, _runs_cell(lane, total, active))
    return table


def launch_verdict(surface: Surface) -> Text:
    """Whether the daemon would launch on this surface, in its terms."""
    if surface.klass in NEVER_LAUNCHED:
        return Text("never launched", style="red")
    if surface.klass == "recovery":
        if surface.unblocked_by is None:
            return Text("blocked: no passed promotion gate", style="bold yellow")
        return Text(f"unblocked by gate {surface.unblocked_by}", style="green")
    return Text("launches", style="green")


def surfaces_renderable(surfaces: SurfaceList, runs: Sequence[RunView]) -> RenderableType:
    total, active = _counts(runs, "surface")
    by_class: dict[str, list[Surface]] = {}
    for surface in surfaces.surfaces:
        by_class.setdefault(surface.klass, []).append(surface)
    parts: list[RenderableType] = [Text(f"registry: {surfaces.path}", style="dim")]
    for klass in (*CLASS_ORDER, *sorted(set(by_class) - set(CLASS_ORDER))):
        header = Text("\n")
        header.append_text(surface_class_text(klass))
        header.append(f"  {CLASS_RULES.get(klass, 'a class this dashboard does not know')}", style="italic")
        parts.append(header)
        members = sorted(by_class.get(klass, []), key=lambda s: s.name)
        if not members:
            parts.append(Text("  none", style="dim"))
            continue
        table = Table(box=None, padding=(0, 2), expand=False, show_header=False)
        table.add_column("surface", style="bold")
        table.add_column("launch")
        table.add_column("runs", justify="right")
        table.add_column("notes", style="dim")
        for surface in members:
            table.add_row(f"  {surface.name}", launch_verdict(surface), _runs_cell(surface.name, total, active),
                          surface.notes)
        parts.append(table)
    unregistered = sorted(set(total) - {surface.name for surface in surfaces.surfaces})
    if unregistered:
        parts.append(Text("\nnot in the registry (launches refused: rule surface-registered)", style="bold red"))
        parts.extend(Text(f"  {name}  {_runs_cell(name, total, active)} runs") for name in unregistered)
    return Group(*parts)


def audit_renderable(audit: AuditList, now: float | None = None) -> RenderableType:
    if not audit.entries:
        return Text("no class changes recorded yet", style="dim")
    table = Table(box=None, padding=(0, 2), expand=False)
    for label in ("time", "surface", "change", "by", "reason", "gate"):
        table.add_column(label, style="bold" if label == "surface" else "")
    for entry in sorted(audit.entries, key=lambda e: e.time, reverse=True):
        change = Text(f"{entry.old_class or 'new'} → ")
        change.append_text(surface_class_text(entry.new_class))
        when = SCREEN.clock(entry.time, now)
        table.add_row(when, entry.surface, change, entry.actor, entry.reason, entry.gate or DASH)
    return table
