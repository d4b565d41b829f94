"""The free space of the trees the daemon serves: its runs dir, its state dir, each bind root.

What the host screen's disk panel and GET /disk show. Trees on one file
system share its free space, so each later one names the earlier one it
shares with instead of seeming to add room; a tree that cannot be read says
why, and the others still show.
"""

from __future__ import annotations

from pathlib import Path

from qwen_daemon.config import DaemonConfig
from qwen_daemon.protocol.disk import DiskView, TreeSpace
from qwen_daemon.state_writes import StateWrites
from qwen_train.disk import free_space


def trees(config: DaemonConfig) -> list[tuple[str, Path]]:
    found = [("runs", config.runs_dir), ("state", Path(config.state_dir))]
    return found + [("bind root", Path(root.path)) for root in config.bind_roots]


def tree_space(role: str, path: Path, seen: dict[int, str]) -> TreeSpace:
    try:
        space = free_space(path)
    except OSError as exc:
        return TreeSpace(role=role, path=str(path), error=f"cannot be read: {exc.strerror or exc}")
    shares = seen.setdefault(space.device, str(path))
    return TreeSpace(role=role, path=str(path), free_bytes=space.free_bytes, total_bytes=space.total_bytes,
                     shares_with=shares if shares != str(path) else None)


def disk_view(config: DaemonConfig, writes: StateWrites) -> DiskView:
    seen: dict[int, str] = {}
    return DiskView(trees=[tree_space(role, path, seen) for role, path in trees(config)],
                    state_writes=writes.problems())
