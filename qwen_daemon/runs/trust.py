"""The stale-status guard: is this status.json the active launch's live heartbeat?

A run dir outlives its launches, and a status.json can be left over from an
earlier launch, half-written by a dying process, or hand-edited. The guard
trusts a status only if its run id and nonce are the active launch's, its pid
is the launched process (or a child of it, e.g. under `accelerate launch`);
for a container launch: the status names the launched container and its pid
is one of that container's processes (pids inside a container are namespace
pids, so they are compared through NSpid); and its heartbeat is fresh. Anything else is stale, with the reason; a stale
status's numbers must never be shown as live. Reading never raises, and never blocks: the file is the
trainer's, so a FIFO, a device, a symlink or an oversized file in its place is read through
`qwen_train.safe_read` and `refused` (with the reason naming it), not opened and waited on.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import psutil

from qwen_daemon.jobs.cgroups import namespace_pid
from qwen_train.safe_read import MiB, UnsafeFile, decode_json, read_regular
from qwen_train.status import STATUS_FILE, Status

STATUS_LIMIT = 4 * MiB
"""A heartbeat keeps its newest 200 events (qwen_train.train.heartbeat.MAX_EVENTS): tens of KiB."""


class Trust(msgspec.Struct, frozen=True):
    """`status` is set only when it can be trusted; `reason` says why when it cannot.

    `previous`: the status is this run's, but an earlier launch's, last written before the active
    launch began (what a resumed run shows until its first heartbeat), not evidence against it.
    `refused`: status.json is no regular file, a symlink or over STATUS_LIMIT; the trainer never writes that.
    """

    live: bool
    status: Status | None = None
    reason: str | None = None
    missing: bool = False
    previous: bool = False
    refused: bool = False


def _is_launched_process(status_pid: int, launch_pid: int) -> bool:
    """The launched pid itself, or one of its descendants."""
    if status_pid == launch_pid:
        return True
    try:
        return any(parent.pid == launch_pid for parent in psutil.Process(status_pid).parents())
    except psutil.Error:
        return False


def _identity_problem(status: Status, name: str, nonce: str) -> str | None:
    """Does the status belong to this run's active launch at all?"""
    if status.run_id != name:
        return f"status is for run {status.run_id!r}, not {name!r}"
    if status.nonce != nonce:
        return f"nonce {status.nonce} is not the active launch's {nonce}"
    return None


def _freshness_problem(status: Status, now: float, stale_after_s: float) -> str | None:
    age = now - status.heartbeat
    if age > stale_after_s:
        return f"heartbeat {age:.0f} s old (stale after {stale_after_s:g} s)"
    if -age > stale_after_s:
        return f"heartbeat {-age:.0f} s in the future: the trainer's clock disagrees with the daemon's"
    return None


def _read(run_dir: Path) -> Status | Trust:
    path = run_dir / STATUS_FILE
    try:
        raw = read_regular(path, STATUS_LIMIT, what="status.json", nofollow=True)
        return decode_json(raw, Status, f"{path}: malformed status.json")
    except FileNotFoundError:
        return Trust(live=False, reason=f"{path}: no status.json yet", missing=True)
    except UnsafeFile as exc:
        return Trust(live=False, reason=f"untrusted: {exc}", refused=True)
    except OSError as exc:
        return Trust(live=False, reason=f"{path}: cannot read: {exc.strerror}")
    except ValueError as exc:  # decode_json's: malformed, mistyped or too deep, naming the file
        return Trust(live=False, reason=str(exc))
    except Exception as exc:  # never let a strange file take the API down
        return Trust(live=False, reason=f"{path}: unreadable: {exc}")


def _container_problem(status: Status, container: str, members: list[int] | None) -> str | None:
    """The status must name the launched container, and its pid must be one of that container's."""
    if status.container != container:
        return f"status is from container {status.container!r}, not the launched container {container!r}"
    if members is not None and status.pid not in {namespace_pid(pid) for pid in members}:
        return f"pid {status.pid} is not a process of container {container}"
    return None


def check_live(
    run_dir: Path, name: str, nonce: str, pid: int | None, now: float, stale_after_s: float,
    container: str | None = None, members: list[int] | None = None, launched_at: float | None = None,
) -> Trust:
    """Trust on an active launch's status.json. `pid` None (not yet spawned) skips the pid check.

    For a container launch, `members` are the container's host pids (None: unknown, skip).
    A status of this run from another launch, written before `launched_at`, is `previous`.
    """
    read = _read(run_dir)
    if isinstance(read, Trust):
        return read
    problem = _identity_problem(read, name, nonce)
    if (problem is not None and read.run_id == name and launched_at is not None
            and read.heartbeat < launched_at):
        return Trust(live=False, reason=f"{problem}: the previous launch's status.json", previous=True)
    if problem is None and container is not None:
        problem = _container_problem(read, container, members)
    elif problem is None and pid is not None and not _is_launched_process(read.pid, pid):
        problem = f"pid {read.pid} is not the active launch's pid {pid} (nor a child of it)"
    if problem is None:
        problem = _freshness_problem(read, now, stale_after_s)
    if problem is not None:
        return Trust(live=False, reason=problem)
    return Trust(live=True, status=read)


def check_final(run_dir: Path, name: str, nonce: str | None) -> Trust:
    """Trust on an ended launch: its last status is trusted if it is that launch's.

    Freshness and pid no longer apply (the process is gone); only identity does,
    so an ended run shows its own final numbers and never an older launch's.
    """
    if nonce is None:
        return Trust(live=False, reason="the run was never launched")
    read = _read(run_dir)
    if isinstance(read, Trust):
        return read
    problem = _identity_problem(read, name, nonce)
    if problem is not None:
        return Trust(live=False, reason=problem)
    return Trust(live=False, status=read)
