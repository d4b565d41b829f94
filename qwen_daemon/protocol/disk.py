"""Disk space as the API shows it: the free space where runs, the daemon's state and the bind roots live.

A run's checkpoints are tens of gigabytes and the scratch SSD also holds
Docker's root, bundles and caches, so the host screen shows each of these
trees with its file system's free space (trees on one file system share it,
and say so), and whether the daemon's own state writes (registry, audit logs,
the GPU reservation) are failing for want of space.
"""

from __future__ import annotations

import msgspec


class TreeSpace(msgspec.Struct, frozen=True):
    """One tree the daemon watches: `role` is "runs", "state" or "bind root"; `error` when it cannot be read."""

    role: str
    path: str
    free_bytes: int | None = None
    total_bytes: int | None = None
    shares_with: str | None = None  # an earlier tree on the same file system: the same free space, not more
    error: str | None = None


class StateWriteProblem(msgspec.Struct, frozen=True):
    """A write of the daemon's own state that failed, and has failed since `since` (until one succeeds)."""

    what: str  # "run registry", "surfaces audit log", ...
    path: str
    error: str
    since: float
    failures: int = 1


class DiskView(msgspec.Struct, frozen=True):
    trees: list[TreeSpace] = []
    state_writes: list[StateWriteProblem] = []
