"""Bind roots: the host trees training containers may see, and proof that they are wired.

On Hemma the canonical trees are /srv/scratch and /srv/storage. Where Docker
cannot see /srv (snap Docker), home-directory sources are bind-mounted onto
them, and containers are given the source path. `status` proves, from the
mount table and stat, that each canonical path is a mount of its source
(same device and inode); `probe` has a container write through what Docker
is given and reads the file back at the canonical path. Both say what is
wrong and how to fix it, never just "failed".
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

from qwen_daemon.config import BindRoot
from qwen_daemon.jobs.job import RunnerRefusal
from qwen_daemon.protocol import BindRootStatus, BindRootsView, ProbeResult, ProbeView
from qwen_train.safe_read import UnsafeFile, read_regular

PROBE_TARGET = "/qwen-probe"
PROBE_SCRIPT = "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text(sys.argv[2])"
_PROBE_LIMIT = 4096  # the token the probe writes is 32 characters; the container could put anything there


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    out, i = [], 0
    while i < len(field):
        code = field[i + 1:i + 4]
        if field[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_points(mountinfo: str = "/proc/self/mountinfo") -> dict[str, str]:
    """Mount point -> 'SOURCE_DEVICE:ROOT_IN_FS' for every line of the mount table (last one wins)."""
    points: dict[str, str] = {}
    with open(mountinfo, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) < 5:
                continue
            points[_unescape(fields[4])] = f"{fields[2]}:{_unescape(fields[3])}"
    return points


def _same_inode(a: Path, b: Path) -> bool:
    sa, sb = a.stat(), b.stat()
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def check_root(root: BindRoot, points: dict[str, str]) -> BindRootStatus:
    canonical = Path(root.path)
    problems: list[str] = []
    if not canonical.is_dir():
        problems.append(f"{canonical} does not exist or is not a directory: create it (mkdir -p {canonical})")
        return BindRootStatus(root.path, root.source, False, problems)
    if not root.source:
        return BindRootStatus(root.path, root.source, True, [], points.get(root.path))
    source = Path(root.source)
    if not source.is_dir():
        problems.append(f"bind source {source} does not exist or is not a directory: create it or fix the config")
        return BindRootStatus(root.path, root.source, False, problems)
    mounted = points.get(str(canonical))
    fix = f"mount --bind {source} {canonical} (fstab: {source} {canonical} none bind 0 0)"
    if mounted is None:
        problems.append(f"{canonical} is not a mount point, so it is not {source}: {fix}")
    elif not _same_inode(canonical, source):
        problems.append(f"{canonical} is mounted ({mounted}) but not from {source} (device/inode differ): "
                        f"umount {canonical} && {fix}")
    return BindRootStatus(root.path, root.source, not problems, problems, mounted)


def status(roots: Sequence[BindRoot]) -> BindRootsView:
    points = mount_points()
    return BindRootsView(roots=[check_root(root, points) for root in roots])


def docker_source(path: Path, roots: Sequence[BindRoot], what: str) -> str:
    """The host path Docker must be given for `path`: it must lie under a bind root."""
    real = Path(os.path.realpath(path))
    for root in roots:
        canonical = Path(os.path.realpath(root.path))
        if real == canonical or canonical in real.parents:
            if not root.source:
                return str(real)
            return str(Path(root.source) / real.relative_to(canonical))
    known = ", ".join(root.path for root in roots) or "none configured"
    raise RunnerRefusal(
        f"{what} {path} is outside the bind roots ({known}): training containers see only those; "
        "move it under a bind root or add one with --bind-root"
    )


RunOnce = Callable[[str, str, list[str]], tuple[int, str]]


def probe(roots: Sequence[BindRoot], python: str, run_once: RunOnce) -> ProbeView:
    """For each root: a container writes a token through Docker's view; we read it at the canonical path."""
    results = []
    for root in roots:
        token = secrets.token_hex(16)
        name = f".qwen-probe-{token[:8]}"
        seen = Path(root.path) / name
        argv = [python, "-c", PROBE_SCRIPT, f"{PROBE_TARGET}/{name}", token]
        given = root.source or root.path
        try:
            code, output = run_once(given, PROBE_TARGET, argv)
        except RunnerRefusal as exc:
            results.append(ProbeResult(root.path, False, str(exc)))
            continue
        try:
            if code != 0:
                detail = (f"the probe container could not write into {given} (exit {code}): {output.strip()[-300:]}; "
                          "give the container user write access there")
                results.append(ProbeResult(root.path, False, detail))
                continue
            try:
                back = read_regular(seen, _PROBE_LIMIT, what="probe file", nofollow=True).decode("utf-8", "replace")
            except (OSError, UnsafeFile) as exc:
                why = exc.strerror if isinstance(exc, OSError) else str(exc)
                results.append(ProbeResult(root.path, False, (
                    f"a container wrote {name} through {given}, but {seen} cannot be read ({why}): "
                    f"{root.path} is not the tree Docker sees; run `qwen-daemon bind-roots status`")))
                continue
            ok = back == token
            detail = (f"a container wrote through {given}; read back at {seen}" if ok
                      else f"{seen} holds other content than the container wrote")
            results.append(ProbeResult(root.path, ok, detail))
        finally:  # where it was written and where it was looked for: the same file only when all is well
            for leftover in (seen, Path(given) / name):
                leftover.unlink(missing_ok=True)
    return ProbeView(results=results)
