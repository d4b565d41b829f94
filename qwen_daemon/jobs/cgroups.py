"""Which host processes belong to which container, read from /proc/PID/cgroup.

NVML names the processes using a GPU by host pid; Docker names containers by
id. The bridge is the cgroup: every process of a container sits in a cgroup
whose path carries the container's 64-hex id, under cgroup v1 or v2, with
the cgroupfs (`/docker/ID`) or the systemd driver (`docker-ID.scope`). One
scan of /proc gives the mapping for every container at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

_CONTAINER_ID = re.compile(r"(?<![0-9a-f])([0-9a-f]{64})(?![0-9a-f])")


def container_of(pid: int, proc: str = "/proc") -> str | None:
    """The id of the container `pid` runs in, or None (host process, gone, or unreadable)."""
    try:
        with open(f"{proc}/{pid}/cgroup", encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        match = _CONTAINER_ID.search(path)
        if match:
            return match.group(1)
    return None


def _pids(proc: str) -> Iterable[int]:
    try:
        names = os.listdir(proc)
    except OSError:
        return []
    return (int(name) for name in names if name.isdigit())


def pids_by_container(proc: str = "/proc") -> dict[str, list[int]]:
    """Every containerised host process, grouped by container id, pids ascending."""
    found: dict[str, list[int]] = {}
    for pid in sorted(_pids(proc)):
        container = container_of(pid, proc)
        if container is not None:
            found.setdefault(container, []).append(pid)
    return found


def container_pids(container_id: str, proc: str = "/proc") -> list[int]:
    """Host pids of one container's processes (empty if it has none running)."""
    return pids_by_container(proc).get(container_id, [])


def namespace_pid(host_pid: int, proc: str = "/proc") -> int | None:
    """The pid a host process has inside its own (innermost) pid namespace, from NSpid."""
    try:
        with open(f"{proc}/{host_pid}/status", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None
