"""The Daemon: registry, runners, monitor, sampler, governance and API as one service.

It is the Backend the API serves and the owner of the threads. It launches
every kind of job under one contract (jobs/job.py; one JobType per kind in
jobs/kinds/): training runs, preprocess jobs, diagnose replays, promotion
gates and scoring jobs. A replay or a gate works on a run's checkpoints and writes into its run
dir, so a run and its child job never run at once: either is refused while the
run is active, and the run's launch or resume while a child runs. Scoring is
the daemon's own: its scheduler (jobs/scoring.py) starts RUN.score beside the
run on each new durable checkpoint and once the run ends, and what it scored
goes to the run's events and journald (runs/score_news.py). When a
training run's launch ends, and again before its gate starts, its resource
summary goes into its run dir (resources/evidence.py): the gate's resource
evidence. Shutting it
down stops serving and sampling but leaves runs alone: trainers (processes
or containers) are detached and a restarted daemon reattaches to them (see
`Monitor.reconcile`). Under systemd it reports READY/STOPPING and feeds the
watchdog only while it answers its own API.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import msgspec

from qwen_daemon import __version__
from qwen_daemon.api.server import ApiServer
from qwen_daemon.config import ConfigError, DaemonConfig, socket_gid, validate_config
from qwen_daemon.governance.surfaces import Governance, GovernanceRefusal
from qwen_daemon.jobs import bindroots
from qwen_daemon.jobs.docker_runner import DockerRunner
from qwen_daemon.jobs.job import Runner
from qwen_daemon.jobs.kinds import DIAGNOSE, GATE, decode_job, resolve_launch
from qwen_daemon.jobs.launcher import Launcher
from qwen_daemon.jobs.process_runner import ProcessRunner
from qwen_daemon.jobs.scoring import ScoreScheduler
from qwen_daemon.protocol import (
    AuditList,
    BindRootsView,
    ClassChange,
    DiagnoseRequest,
    GateRequest,
    GateVerdict,
    HealthView,
    HostView,
    LaunchRequest,
    ProbeView,
    RunDetail,
    RunHistory,
    RunList,
    RunResources,
    RunScores,
    RunView,
    Surface,
    SurfaceList,
)
from qwen_daemon.protocol.client import DaemonClient, DaemonError
from qwen_daemon.protocol.disk import DiskView
from qwen_daemon.protocol.errors import RequestError, bad_request, conflict, unprocessable
from qwen_daemon.protocol.gpu import GpuStatus, ReserveRequest
from qwen_daemon.resources.disk_space import disk_view
from qwen_daemon.resources.evidence import Evidence
from qwen_daemon.resources.gpu.choose import choose_backend
from qwen_daemon.resources.sampler import Sampler
from qwen_daemon.resources.summary_cache import SummaryCache
from qwen_daemon.runs.monitor import Monitor
from qwen_daemon.runs.record import RunRecord
from qwen_daemon.runs.registry import Registry
from qwen_daemon.runs.run_dir import RunFiles
from qwen_daemon.runs.run_view import run_detail, run_view
from qwen_daemon.runs.score_news import ScoreNews
from qwen_daemon.sharing.disk_admission import DiskAdmission
from qwen_daemon.sharing.gpu_sharing import GpuSharing
from qwen_daemon.sharing.reservations import ReservationError, Reservations
from qwen_daemon.state_writes import StateWrites
from qwen_daemon.systemd.journal import JournalWriter
from qwen_daemon.systemd.notify import Watchdog, notify, watchdog_interval
from qwen_train.spec import SpecError
from qwen_train.status import Diagnosis

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
    try:  # the pid is for the operator's eyes: a full state dir must not keep the daemon from starting
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as exc:
        log.warning("could not write the pid into %s: %s", state_dir / LOCK_FILE, exc.strerror)
    return fd


class Daemon:
    def __init__(self, config: DaemonConfig) -> None:
        self.config = validate_config(config)
        self.config.runs_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = lock_state_dir(Path(config.state_dir))
        self.journal = JournalWriter(config.journal_socket) if config.journal_socket else None
        self.state_writes = StateWrites(self.journal)  # a full state dir: 507s, reported once, retried
        self.registry = Registry(config.db_path, self.state_writes)
        self.governance = Governance(config.surfaces_file, config.audit_log, self.state_writes)
        self.docker = DockerRunner(config)
        self.runners: dict[str, Runner] = {"process": ProcessRunner(config), "docker": self.docker}
        self.summaries = SummaryCache(self.registry, config.sample_period_s)
        self.evidence = Evidence(self.summaries)
        self.monitor = Monitor(config, self.registry, self.runners, on_end=self._launch_ended)
        probe = choose_backend(Path(config.gpu_root), try_nvml=False) if config.gpu_root else None
        self.sampler = Sampler(
            config.sample_period_s, self.registry, self._active_names, probe=probe, run_pids=self._run_pids,
            journal=self.journal, last_before_start=self.registry.last_sample_time(),
        )
        self.gpu = GpuSharing(self.registry, Reservations(Path(config.state_dir), self.state_writes),
                              config.gpu_admission, lambda: self.sampler.backend, self._run_pids)
        self.launcher = Launcher(self.config, self.registry, self.governance, self.runners, self.gpu, self.evidence,
                                 DiskAdmission(self._gpu_bytes), self.monitor.later)
        self.files = RunFiles(self._record)
        self.scoring = ScoreScheduler(self.config, self.registry, self.launcher, self._members)
        self.score_news = ScoreNews(self.registry, self.journal)
        self._watchdog: Watchdog | None = None
        self._server: ApiServer | None = None
        self._control = self.launcher.control  # launch and stop of any name never interleave
        self._serving: threading.Thread | None = None

    def _launch_ended(self, record: RunRecord) -> None:
        """A launch ended: a training run's resource evidence, its end's scoring; a scoring job's news."""
        self.evidence.launch_ended(record)
        self.scoring.run_ended(record)
        self.score_news.launch_ended(record)

    def _gpu_bytes(self) -> int | None:
        """The first card's memory as the sampler reads it (None: no GPU): what "auto" recipes resolve against.
        A card asleep since the daemon started has no reading yet: it is woken for one, as a run is about to
        use it (a sleeping card's last reading does, and wakes nothing)."""
        for wake in (False, True):
            gpus = sorted(self.sampler.backend.read(wake=wake)[0], key=lambda g: g.index)
            if not gpus or gpus[0].vram_total_bytes is not None:
                break
        return gpus[0].vram_total_bytes if gpus else None

    def _active_names(self) -> list[str]:
        return [record.name for record in self.registry.active()]

    def _members(self, record: RunRecord) -> list[int] | None:
        runner = self.runners.get(record.runner)
        return runner.pids(record.nonce) if runner is not None and record.nonce else None

    def _run_pids(self, name: str) -> list[int]:
        record = self.registry.get(name)
        return (self._members(record) or []) if record is not None else []

    def _classes(self) -> dict[str, str]:
        try:
            return {s.name: s.klass for s in self.governance.load().surfaces}
        except GovernanceRefusal:
            return {}

    def _with_class(self, view: RunView, classes: dict[str, str]) -> RunView:
        return msgspec.structs.replace(view, surface_class=classes.get(view.surface),
                                       warning=self.gpu.warnings.get(view.name))

    # Backend

    def health(self) -> HealthView:
        """`ok` while the daemon serves and monitors; state writes a full disk refuses are listed, not a failure."""
        failing = [f"{p.what} {p.path}: {p.error}" for p in self.state_writes.problems()]
        return HealthView(ok=self.monitor.alive, version=__version__, pid=os.getpid(), state_writes=failing)

    def disk(self) -> DiskView:
        return disk_view(self.config, self.state_writes)

    def host(self) -> HostView:
        return HostView(sampler=self.sampler.health(time.time()), sample=self.sampler.latest)

    def runs(self) -> RunList:
        now = time.time()
        stale = self.config.stale_after_s
        classes = self._classes()
        return RunList(runs=[
            self._with_class(run_view(record, now, stale, self._members)[0], classes) for record in self.registry.all()
        ])

    def _record(self, name: str) -> RunRecord:
        return self.launcher.record(name)

    def detail(self, name: str) -> RunDetail:
        record = self._record(name)
        now = time.time()
        summary = self.summaries.get(name, now)
        detail = run_detail(self.registry, record, now, self.config.stale_after_s, summary, self._members)
        checkpoints, checkpoints_error = self.files.checkpoints(record)
        return msgspec.structs.replace(detail, run=self._with_class(detail.run, self._classes()),
                                       checkpoints=checkpoints, checkpoints_error=checkpoints_error)

    def resources(self, name: str, points: int) -> RunResources:
        """The run's resource series over its launches (series.py), in at most `points` buckets."""
        self._record(name)
        return self.summaries.series(name, points, time.time())

    def _view(self, name: str) -> RunView:
        view = run_view(self._record(name), time.time(), self.config.stale_after_s, self._members)[0]
        return self._with_class(view, self._classes())

    def launch(self, request: LaunchRequest, actor: str = "local") -> RunView:
        """Check governance and the runner, reserve the name, start the job with a fresh nonce."""
        job = resolve_launch(request)
        with self._control:
            self.launcher.spawn(job, resume=False, actor=actor)
        return self._view(job.name)

    def resume(self, name: str, actor: str = "local") -> RunView:
        """Launch an ended job again with the spec it ran with: a run from its newest durable
        checkpoint, a preprocess job from its journal, a diagnose job's replay once more."""
        with self._control:
            record = self._record(name)
            if record.active:
                raise conflict(f"run {name!r} is {record.state}: it can be resumed only once it has ended")
            try:
                job = decode_job(record.kind, name, record.lane, record.surface, record.runner, record.spec_json,
                                 record.parent)
            except SpecError as exc:
                raise unprocessable(str(exc)) from None
            job = job.type.relaunch(job, self.launcher)
            self.launcher.spawn(job, resume=True, actor=actor)
        return self._view(name)

    def diagnose(self, name: str, request: DiagnoseRequest, actor: str = "local") -> RunView:
        """Start `NAME.diagnose`: replay run NAME from its nearest durable checkpoint to the step."""
        if request.step is not None and request.step < 1:
            raise bad_request(f"step {request.step} is no optimizer step: steps count from 1")
        with self._control:
            job = DIAGNOSE.for_run(self._record(name), request.step, self.launcher)
            self.launcher.spawn(job, resume=False, actor=actor)
        return self._view(job.name)

    def gate(self, name: str, request: GateRequest, actor: str = "local") -> RunView:
        """Start `NAME.gate`: the promotion gate on ended training run NAME, with fresh resource evidence."""
        with self._control:
            job = GATE.for_run(name, request, self.launcher)
            self.launcher.spawn(job, resume=False, actor=actor)
        return self._view(job.name)

    # the shared GPU

    def gpu_status(self) -> GpuStatus:
        return self.gpu.status()

    def gpu_reserve(self, request: ReserveRequest, actor: str = "local") -> GpuStatus:
        try:
            self.gpu.reserve(request.reason, actor)
        except ReservationError as exc:
            raise conflict(str(exc)) from None
        return self.gpu.status()

    def gpu_release(self, actor: str = "local") -> GpuStatus:
        self.gpu.release(actor)
        return self.gpu.status()

    # what a run left in its dir (runs/run_dir.py)

    def history(self, name: str) -> RunHistory:
        return self.files.history(name)

    def diagnosis(self, name: str) -> Diagnosis:
        return self.files.diagnosis(name)

    def verdict(self, name: str) -> GateVerdict:
        return self.files.verdict(name)

    def scores(self, name: str) -> RunScores:
        return self.files.scores(name)

    def stop(self, name: str, actor: str = "local") -> RunView:
        """Graceful stop; idempotent for a run that is stopping or already ended."""
        with self._control:
            record = self._record(name)
            if record.state == "queued" and self.registry.dequeue(name, f"taken off the GPU queue by {actor}",
                                                                  time.time()):
                log.info("queued run %s taken off the GPU queue by %s", name, actor)
            if record.state == "running" and self.monitor.request_stop(record, time.time()):
                log.info("stop of run %s requested by %s (pid %s)", name, actor, record.pid)
        return self._view(name)

    # governance and bind roots

    def surfaces(self) -> SurfaceList:
        try:
            return SurfaceList(surfaces=self.governance.load().surfaces, path=str(self.governance.path))
        except GovernanceRefusal as exc:
            raise RequestError(500, str(exc)) from None

    def set_class(self, name: str, change: ClassChange, actor: str = "local") -> Surface:
        try:
            surface = self.governance.set_class(name, change.klass, change.reason, actor, change.gate, change.notes)
        except GovernanceRefusal as exc:
            raise RequestError(403, str(exc)) from None
        log.info("surface %s is now %s (by %s: %s)", name, change.klass, actor, change.reason)
        return surface

    def audit(self) -> AuditList:
        return AuditList(entries=self.governance.audit())

    def bind_roots(self) -> BindRootsView:
        return bindroots.status(self.config.bind_roots)

    def probe(self) -> ProbeView:
        if not self.config.bind_roots:
            raise unprocessable("no bind roots are configured: pass --bind-root PATH[=SOURCE] to qwen-daemon serve")
        return bindroots.probe(self.config.bind_roots, self.config.docker.python, self.docker.run_once)

    # lifecycle

    def start(self) -> None:
        """Reconcile with what survived a restart, then sample, monitor and serve."""
        # Bind first: a second daemon is refused before it touches any run, and requests
        # that arrive during reconciliation wait in the backlog.
        self._server = ApiServer(self.config.socket, self, socket_gid(self.config))
        self.monitor.reconcile(time.time())
        self.sampler.start()
        self.monitor.start()
        self.gpu.start(self.launcher.launch_queued)
        self.scoring.start()
        self._serving = threading.Thread(target=self._server.serve_forever, name="api", daemon=True)
        self._serving.start()

    def close(self) -> None:
        """Stop serving (waiting for requests in flight), sampling and monitoring. Runs go on."""
        if self._server is not None:
            if self._serving is not None:  # shutdown() waits for serve_forever, which a failed start never ran
                self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.monitor.stop()
        self.scoring.stop()
        self.gpu.stop()
        self.sampler.stop()
        self.docker.close()
        if self.journal is not None:
            self.journal.close()
        self.registry.close()
        os.close(self._lock_fd)

    def healthy(self) -> bool:
        """What the watchdog vouches for: the threads run and the API answers a request."""
        if not (self.monitor.alive and self._serving is not None and self._serving.is_alive()):
            return False
        try:
            return DaemonClient(self.config.socket, timeout=5.0).health().ok
        except DaemonError:
            return False

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
            notify(f"READY=1\nSTATUS=serving on {self.config.socket}\nMAINPID={os.getpid()}")
            interval = watchdog_interval()
            if interval is not None:
                self._watchdog = Watchdog(interval, self.healthy)
                self._watchdog.start()
            while not stopping.wait(0.5):
                pass
        finally:
            notify("STOPPING=1")
            if self._watchdog is not None:
                self._watchdog.stop()
            self.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
