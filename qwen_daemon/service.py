"""The Daemon: registry, runner, monitor, sampler and API as one service.

It is the Backend the API serves and the owner of the threads. Shutting it
down stops serving and sampling but leaves runs alone: trainers are detached
and a restarted daemon reattaches to them (see `Monitor.reconcile`).
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from qwen_daemon import __version__
from qwen_daemon.api import ApiServer
from qwen_daemon.config import ConfigError, DaemonConfig, socket_gid, validate_config
from qwen_daemon.errors import RequestError, conflict, not_found
from qwen_daemon.intake import resolve_launch
from qwen_daemon.monitor import Monitor
from qwen_daemon.protocol import HealthView, HostView, LaunchRequest, RunDetail, RunList, RunView
from qwen_daemon.registry import Registry, RunConflict, RunRecord
from qwen_daemon.runner import ProcessRunner
from qwen_daemon.sampler import Sampler
from qwen_daemon.summary_cache import SummaryCache
from qwen_daemon.views import run_detail, run_view
from qwen_train.spec import RunSpec

log = logging.getLogger(__name__)

LOCK_FILE = "daemon.lock"


def lock_state_dir(state_dir: Path) -> int:
    """One daemon per state dir: two would both reap, stop and reconcile the same runs."""
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(
            f"another daemon (pid {holder}) is using state dir {state_dir}: stop it or pass another --state-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class Daemon:
    def __init__(self, config: DaemonConfig) -> None:
        self.config = validate_config(config)
        self.config.runs_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = lock_state_dir(Path(config.state_dir))
        self.registry = Registry(config.db_path)
        self.runner = ProcessRunner(config)
        self.monitor = Monitor(config, self.registry, self.runner)
        self.sampler = Sampler(config.sample_period_s, self.registry, self._active_names)
        self.summaries = SummaryCache(self.registry, config.sample_period_s)
        self._server: ApiServer | None = None
        # Launch and stop of one name must not interleave (a stop between reserve and spawn
        # would find no process to signal); both are rare, so one lock for all names is enough.
        self._control = threading.Lock()
        self._serving: threading.Thread | None = None

    def _active_names(self) -> list[str]:
        return [record.name for record in self.registry.active()]

    # Backend

    def health(self) -> HealthView:
        return HealthView(ok=self.monitor.alive, version=__version__, pid=os.getpid())

    def host(self) -> HostView:
        return HostView(sampler=self.sampler.health(time.time()), sample=self.sampler.latest)

    def runs(self) -> RunList:
        now = time.time()
        stale = self.config.stale_after_s
        return RunList(runs=[run_view(record, now, stale)[0] for record in self.registry.all()])

    def _record(self, name: str) -> RunRecord:
        record = self.registry.get(name)
        if record is None:
            raise not_found(f"no run named {name!r}: list runs with `qwen-daemon runs`")
        return record

    def detail(self, name: str) -> RunDetail:
        record = self._record(name)
        now = time.time()
        summary = self.summaries.get(name, now)
        return run_detail(self.registry, record, now, self.config.stale_after_s, summary)

    def _view(self, name: str) -> RunView:
        return run_view(self._record(name), time.time(), self.config.stale_after_s)[0]

    def launch(self, request: LaunchRequest) -> RunView:
        """Reserve the name, write the spec, spawn the trainer with a fresh nonce."""
        spec = resolve_launch(request)
        with self._control:
            self._spawn(spec)
        return self._view(spec.name)

    def _spawn(self, spec: RunSpec) -> None:
        """Reserve, spawn, record the pid; a spawn failure ends the launch as failed, with why."""
        nonce = secrets.token_hex(16)
        run_dir = self.config.run_dir(spec.name)
        now = time.time()
        try:
            self.registry.reserve(spec, run_dir, nonce, now)
        except RunConflict as exc:
            raise conflict(str(exc)) from None
        try:
            pid = self.runner.launch(spec, run_dir, nonce)
        except (OSError, subprocess.SubprocessError) as exc:
            message = f"could not start the trainer with {self.config.trainer_python}: {exc}"
            self.registry.finish(spec.name, nonce, "failed", None, message, time.time())
            raise RequestError(500, message, "check the daemon's --trainer-python and the run dir") from None
        self.registry.set_running(spec.name, nonce, pid)
        log.info("launched run %s (pid %d, nonce %s) in %s", spec.name, pid, nonce, run_dir)

    def stop(self, name: str) -> RunView:
        """Graceful stop; idempotent for a run that is stopping or already ended."""
        with self._control:
            record = self._record(name)
            if record.state == "running" and self.monitor.request_stop(record, time.time()):
                log.info("stop requested for run %s (pid %s)", name, record.pid)
        return self._view(name)

    # lifecycle

    def start(self) -> None:
        """Reconcile with what survived a restart, then sample, monitor and serve."""
        # Bind first: a second daemon is refused before it touches any run, and requests
        # that arrive during reconciliation wait in the backlog.
        self._server = ApiServer(self.config.socket, self, socket_gid(self.config))
        self.monitor.reconcile(time.time())
        self.sampler.start()
        self.monitor.start()
        self._serving = threading.Thread(target=self._server.serve_forever, name="api", daemon=True)
        self._serving.start()

    def close(self) -> None:
        """Stop serving (waiting for requests in flight), sampling and monitoring. Runs go on."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.monitor.stop()
        self.sampler.stop()
        self.registry.close()
        os.close(self._lock_fd)

    def run_until_signalled(self, on_ready: Callable[[], None]) -> None:
        """Serve until SIGTERM or SIGINT, then shut down gracefully."""
        stopping = threading.Event()

        def _on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s: shutting down, runs keep going", signal.Signals(signum).name)
            stopping.set()

        previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            on_ready()
            while not stopping.wait(0.5):
                pass
        finally:
            self.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
