"""`qwen-daemon disk`: the free space of the runs dir, the state dir and the bind roots, and failing state writes."""

from __future__ import annotations

from qwen_daemon.protocol.disk import DiskView
from qwen_daemon.protocol.display import PLAIN


def disk_text(view: DiskView) -> str:
    lines = [f"STATE WRITES FAILING since {PLAIN.timestamp(p.since)} ({p.failures}x): the {p.what} {p.path}: {p.error}"
             for p in view.state_writes]
    for tree in view.trees:
        if tree.error is not None:
            lines.append(f"{tree.role:<10} {tree.path}: {tree.error}")
            continue
        shared = f"  (same file system as {tree.shares_with})" if tree.shares_with else ""
        lines.append(f"{tree.role:<10} {tree.path}: {PLAIN.size(tree.free_bytes)} free of "
                     f"{PLAIN.size(tree.total_bytes)}{shared}")
    return "\n".join(lines) or "no trees reported"
