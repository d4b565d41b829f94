"""The `process` runner: the trainer as a detached local process.

Used where there is no Docker (Colab, development, CI). Each launch gets its
own session (start_new_session) so the trainer survives the daemon's restart
and a terminal's Ctrl-C; its output goes to run_dir/trainer.log, not to the
daemon. Stop sends SIGTERM to the trainer alone (it shuts its own workers
down in order, writing a durable checkpoint); SIGKILL, the escalation, goes
to the whole process group so nothing is left behind.

After a daemon restart the trainer is no longer our child: it is "adopted"
by pid, and recognised by the nonce on its command line (or, for a job whose
command takes none, `diagnose`, in its environment) so that a recycled pid
is never mistaken for it. Its exit code is then lost. A daemon that died
between the fork and recording the pid left a launch with no pid: its
trainer is found in the process table by its nonce (the launch's topmost
process that carries it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil

from qwen_daemon.config import DaemonConfig
from qwen_daemon.jobs.job import LOG_FILE, SPEC_FILE, Exit, Job, Launched, job_argv
from qwen_daemon.runs.safe_files import open_append
from qwen_train.atomic import atomic_write_bytes
from qwen_train.status import NONCE_ENV

__all__ = ["LOG_FILE", "ProcessRunner", "process_tree"]

def _carries_nonce(pid: int, nonce: str) -> bool:
    """True if `pid` is a running (not zombie) process launched with `nonce`."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return nonce in proc.cmdline() or proc.environ().get(NONCE_ENV) == nonce
    except psutil.Error:
        return False


def find_by_nonce(nonce: str) -> int | None:
    """The topmost live process launched with `nonce` (its workers carry the nonce in their environment too)."""
    carriers = {proc.pid: proc.info["ppid"] for proc in psutil.process_iter(["ppid"])
                if _carries_nonce(proc.pid, nonce)}
    roots = sorted(pid for pid, parent in carriers.items() if parent not in carriers)
    return roots[0] if roots else None


def _signal(pid: int, sig: signal.Signals, group: bool) -> bool:
    """Send `sig`; False if the process is already gone."""
    try:
        if group and os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


class ProcessRunner:
    """Spawns, signals and reaps trainers, keyed by launch nonce (a `jobs.Runner`). Thread-safe."""

    name = "process"

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._adopted: dict[str, int] = {}

    def check(self, job: Job, run_dir: Path) -> None:
        """Any job the intake accepted can run as a local process."""

    def launch(self, job: Job, run_dir: Path, nonce: str, resume: bool = False) -> Launched:
        """Write the resolved spec, spawn the job, return its pid. Raises OSError.

        The job gets the daemon's own environment (plus the nonce), so settings such
        as CUDA_VISIBLE_DEVICES or HF_HOME given to the daemon reach every job."""
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(run_dir / SPEC_FILE, job.spec_bytes())
        command = job_argv(self.config.trainer_python, run_dir, job, nonce, resume)
        env = {**os.environ, NONCE_ENV: nonce, "PYTHONUNBUFFERED": "1"}
        with open_append(run_dir / LOG_FILE, "log") as log:  # a previous launch's trainer may have left a FIFO
            stamp = time.strftime("%Y-%m-%d %H:%M:%S %z")
            log.write(f"=== {stamp} launch {nonce}: {' '.join(command)}\n".encode())
            log.flush()
            child = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=run_dir,
                env=env,
                start_new_session=True,
            )
        with self._lock:
            self._children[nonce] = child
        return Launched(pid=child.pid)

    def adopt(self, nonce: str, pid: int | None, container: str | None = None) -> Launched | None:
        """Watch a trainer a previous daemon started; None if it is gone. `pid` None: look it up by nonce."""
        if pid is None:
            pid = find_by_nonce(nonce)
        if pid is None or not _carries_nonce(pid, nonce):
            return None
        with self._lock:
            self._adopted[nonce] = pid
        return Launched(pid=pid)

    def poll(self, nonce: str) -> Exit | None:
        """None while the launch runs; its Exit (reaped) once it has ended."""
        with self._lock:
            child = self._children.get(nonce)
            if child is not None:
                code = child.poll()
                if code is None:
                    return None
                del self._children[nonce]
                return Exit(code=code)
            pid = self._adopted.get(nonce)
            if pid is not None and _carries_nonce(pid, nonce):
                return None
            self._adopted.pop(nonce, None)
            return Exit(code=None)

    def _send(self, nonce: str, sig: signal.Signals, group: bool) -> bool:
        """Signal the launch's process if it still runs. Under the lock, so a child
        cannot be reaped (and its pid recycled) between the check and the signal."""
        with self._lock:
            child = self._children.get(nonce)
            if child is not None:
                return child.poll() is None and _signal(child.pid, sig, group)
            pid = self._adopted.get(nonce)
            return pid is not None and _carries_nonce(pid, nonce) and _signal(pid, sig, group)

    def terminate(self, nonce: str) -> bool:
        """Ask the trainer to stop gracefully; False if it is not running."""
        return self._send(nonce, signal.SIGTERM, group=False)

    def kill(self, nonce: str) -> bool:
        """The escalation: SIGKILL the trainer's whole process group."""
        return self._send(nonce, signal.SIGKILL, group=True)

    def pids(self, nonce: str) -> list[int]:
        """The trainer and its descendants (data workers, `accelerate launch` children)."""
        with self._lock:
            child = self._children.get(nonce)
            pid = child.pid if child is not None else self._adopted.get(nonce)
        return process_tree(pid) if pid is not None else []


def process_tree(pid: int) -> list[int]:
    try:
        root = psutil.Process(pid)
        return [pid, *(p.pid for p in root.children(recursive=True))]
    except psutil.Error:
        return []
