"""Disk space on the host screen: the runs dir, the state dir and each bind root, and failing state writes.

A durable checkpoint of the full model is 21.5 GiB and the scratch SSD also
holds Docker's root and the caches, so the free space where runs write is a
live figure, not a surprise at step 500. A tree on the same file system as
an earlier one says so (its free space is the same space, not more). Writes
of the daemon's own state that a full disk refuses are listed first, in red:
reads go on, but nothing the daemon decides is recorded until space returns.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from qwen_daemon.protocol.disk import DiskView, TreeSpace
from qwen_daemon.protocol.display import SCREEN

LOW_SHARE = 0.10  # under a tenth free is shown in yellow; under 2 GiB (a checkpoint's tenth) in red
LOW_BYTES = 2 * 2**30


def _style(tree: TreeSpace) -> str:
    if tree.free_bytes is None or not tree.total_bytes:
        return "red"
    if tree.free_bytes < LOW_BYTES:
        return "bold red"
    return "yellow" if tree.free_bytes < LOW_SHARE * tree.total_bytes else "green"


def _free(tree: TreeSpace) -> Text:
    if tree.error is not None:
        return Text(tree.error, style="red")
    used = 1 - (tree.free_bytes or 0) / tree.total_bytes if tree.total_bytes else 0.0
    text = Text(f"{SCREEN.size(tree.free_bytes)} free of {SCREEN.size(tree.total_bytes)}", style=_style(tree))
    text.append(f"  ({SCREEN.percent(100 * used)} used)", style="dim")
    if tree.shares_with:
        text.append(f"  same file system as {tree.shares_with}", style="dim")
    return text


def disk_renderable(view: DiskView) -> RenderableType:
    parts: list[RenderableType] = []
    for problem in view.state_writes:
        parts.append(Text(f"STATE WRITES FAILING since {SCREEN.clock(problem.since)} ({problem.failures}x): the "
                          f"{problem.what} {problem.path}: {problem.error}; reads go on, free space to resume",
                          style="bold red"))
    table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
    for column in ("tree", "path", "free"):
        table.add_column(column)
    for tree in view.trees:
        table.add_row(tree.role, Text(tree.path, style="bold"), _free(tree))
    parts.append(table if view.trees else Text("no trees reported", style="dim"))
    return Group(*parts)
