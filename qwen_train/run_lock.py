"""One process per run dir: an exclusive lock the trainer (or prepare, diagnose, gate) holds for its life.

Two trainers on one run dir interleave losses.jsonl, race for the same
checkpoint names and end the run in the wrong state; a daemon that died at the
wrong instant could start the second one. So every job takes `RUN_DIR/run.lock`
with flock(2) before it touches anything: the kernel releases it when the
holder dies however it dies (SIGKILL included), so there is no stale lock to
clean. Inside the file the holder writes who it is (pid, nonce, command), for
the message the next one gets. Whether a lock is held is asked of the kernel
(/proc/locks, whose FLOCK lines carry the holder's pid and the file's
device:inode), not of the file, so looking never takes the lock and never
trips a job that is starting. Torch-free: the daemon reads it too.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from pathlib import Path

import msgspec

from qwen_train.atomic import fsync_dir

LOCK_FILE = "run.lock"
PROC_LOCKS = Path("/proc/locks")
MAX_HOLDER_BYTES = 4096


class Holder(msgspec.Struct, frozen=True):
    """Who holds a run dir: as the holder wrote it (`pid` in its own pid namespace) and as the kernel says."""

    pid: int
    nonce: str | None = None
    command: str = ""
    since: float = 0.0


class RunLocked(Exception):
    """Another process holds the run dir; the message names it and what to do."""

    def __init__(self, run_dir: Path, holder: Holder | None, problem: str | None = None) -> None:
        who = "another process (its lock file names no holder yet)" if holder is None else (
            f"pid {holder.pid} ({holder.command or 'a job'}, nonce {holder.nonce or 'none'}, since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(holder.since))})")
        super().__init__(
            f"run dir {run_dir} cannot be locked: {problem}" if problem else
            f"run dir {run_dir} is in use by {who}: one process per run dir. Wait for it to end or stop it "
            f"(`qwen-daemon stop RUN`, or kill {holder.pid if holder else 'it'}); never start a second one beside it")
        self.run_dir = run_dir
        self.holder = holder


class RunLock:
    """The held lock; release() (or process death) frees it."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_holder(run_dir: Path) -> Holder | None:
    """What the lock file says; None when it is missing, empty, half-written (a holder is writing it) or no
    regular file. The run dir is written by whatever runs there, so the read never blocks (a FIFO planted as the
    lock file) and never takes more than a holder record's worth (a huge or endless file)."""
    try:
        fd = os.open(run_dir / LOCK_FILE, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        raw = os.read(fd, MAX_HOLDER_BYTES)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        return msgspec.json.decode(raw, type=Holder)
    except msgspec.MsgspecError:
        return None


def acquire(run_dir: Path, nonce: str | None, command: str) -> RunLock:
    """Take the run dir's lock or raise RunLocked; creates the run dir. The fd does not survive exec."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    try:  # never through a link, nor onto anything but a regular file: the run dir is another party's to write
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise RunLocked(run_dir, None, f"its lock file {path} cannot be opened ({exc.strerror}): remove it") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RunLocked(run_dir, None, f"its lock file {path} is no regular file: remove it")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise RunLocked(run_dir, read_holder(run_dir)) from None
        raise
    me = Holder(pid=os.getpid(), nonce=nonce, command=command, since=time.time())
    os.ftruncate(fd, 0)
    os.pwrite(fd, msgspec.json.encode(me) + b"\n", 0)
    os.fsync(fd)
    fsync_dir(run_dir)
    return RunLock(fd, path)


def _lock_line_pids(text: str, device: str, inode: int) -> list[int]:
    """Pids of the FLOCK lines of /proc/locks on `device` ("maj:min" in hex) and `inode`.

    A line reads `1: FLOCK  ADVISORY  WRITE 31462 fe:00:2146434 0 EOF` (a waiter's has `->` after the
    number); the pid is as the reader's pid namespace sees it, 0 where it cannot see the holder."""
    pids = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] == "->":
            continue
        kind, pid, where = fields[1], fields[4], fields[5]
        major, _, rest = where.partition(":")
        minor, _, ino = rest.partition(":")
        if kind == "FLOCK" and ino.isdigit() and int(ino) == inode and f"{int(major, 16)}:{int(minor, 16)}" == device:
            pids.append(int(pid) if pid.lstrip("-").isdigit() else 0)
    return pids


def held_by(run_dir: Path, proc_locks: Path = PROC_LOCKS) -> Holder | None:
    """The run dir's live holder, or None when nobody holds its lock. Never takes the lock.

    The pid is the kernel's (as this process's pid namespace sees it, so a trainer in a container
    shows its host pid); nonce and command are the file's."""
    path = run_dir / LOCK_FILE
    try:
        st = path.lstat()
        text = proc_locks.read_text()
    except OSError:
        return None
    pids = _lock_line_pids(text, f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}", st.st_ino)
    if not pids:
        return None
    written = read_holder(run_dir)
    pid = pids[0] or (written.pid if written else 0)
    if written is None:
        return Holder(pid=pid)
    return msgspec.structs.replace(written, pid=pid)
