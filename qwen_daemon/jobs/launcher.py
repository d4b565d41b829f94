"""Starting a job: the rules every launch meets, then the runner, with the registry kept in step.

Every start goes through `spawn`: the job's governance (its kind says which
rules), its run dir free of any other process (the dir's lock), GPU admission
(room for its memory plan, no reservation; refused, or queued when the
operator chose so), disk admission (room on the run dir's disk for its disk
plan; refused or queued likewise), the runner's own checks, then the name is
reserved with a fresh nonce, the process started and its pid recorded. The
GPU queue starts its runs through the same path. A start the registry cannot
record (a full state dir) is handed to the monitor to record later. `control` serialises launch and stop of any
name: a stop between reserve and spawn would find no process to signal.
"""

from __future__ import annotations

import logging
import secrets
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from qwen_daemon import faults
from qwen_daemon.config import DaemonConfig
from qwen_daemon.governance.surfaces import Governance, GovernanceRefusal
from qwen_daemon.jobs.job import Job, Launched, Runner, RunnerRefusal
from qwen_daemon.jobs.kinds import decode_job
from qwen_daemon.protocol import RunState, kind_info
from qwen_daemon.protocol.errors import RequestError, conflict, not_found, unprocessable
from qwen_daemon.resources.evidence import Evidence
from qwen_daemon.runs.checkpoints import CheckpointsUnreadable, list_kept
from qwen_daemon.runs.record import RunRecord
from qwen_daemon.runs.registry import Registry, RunConflict
from qwen_daemon.sharing.disk_admission import RULE_DISK, DiskAdmission
from qwen_daemon.sharing.gpu_sharing import GpuSharing, Refused
from qwen_daemon.state_writes import StateWriteError
from qwen_train.run_lock import RunLocked, held_by
from qwen_train.safe_read import UnsafeFile
from qwen_train.spec import SpecError

log = logging.getLogger(__name__)

RULE_ONE_PROCESS = "one-process-per-run-dir"
# The monitor's `later`: a launch's start (or end) the registry could not record, for a later tick.
Later = Callable[..., None]


def refuse_held(run_dir: Path) -> None:
    """409 while any process holds the run dir's lock: a trainer the registry lost, or one started by hand."""
    holder = held_by(run_dir)
    if holder is not None:
        raise conflict(f"refused by rule {RULE_ONE_PROCESS}: {RunLocked(run_dir, holder)}")


class Launcher:
    """Starts jobs for the daemon; also the JobContext the kinds build their child jobs with."""

    def __init__(self, config: DaemonConfig, registry: Registry, governance: Governance,
                 runners: dict[str, Runner], gpu: GpuSharing, evidence: Evidence,
                 disk: DiskAdmission | None = None, later: Later | None = None) -> None:
        self.config = config
        self.registry = registry
        self.governance = governance
        self.runners = runners
        self.gpu = gpu
        self.evidence = evidence
        self.disk = disk
        self.later = later
        self.control = threading.Lock()

    # the JobContext kinds build their jobs with

    def record(self, name: str) -> RunRecord:
        """The registry's record of `name`; a 404 naming how to list runs for an unknown one."""
        record = self.registry.get(name)
        if record is None:
            raise not_found(f"no run named {name!r}: list runs with `qwen-daemon runs`")
        return record

    def active_children(self, run: str) -> list[RunRecord]:
        """The child jobs (RUN.diagnose, RUN.gate, RUN.score) of `run` that are active now."""
        return [r for r in self.registry.active() if r.parent == run]

    def write_evidence(self, record: RunRecord) -> None:
        self.evidence.before_gate(record)

    def _govern(self, job: Job) -> None:
        """The job's kind says which rules it meets (a training run: surface and lane); a run waits for its child,
        unless that child runs beside it (scoring)."""
        try:
            job.type.govern(job, self.governance)
        except GovernanceRefusal as exc:
            raise RequestError(403, str(exc)) from None
        children = [c for c in self.active_children(job.name) if not kind_info(c.kind).beside]
        if children:
            child = children[0]
            raise conflict(f"{child.kind} job {child.name!r} is {kind_info(child.kind).doing} run {job.name!r}: "
                           "wait for it to end (or stop it) first")

    def spawn(self, job: Job, resume: bool, actor: str, from_queue: bool = False, queue: bool = False) -> None:
        """Governance, GPU admission, runner checks, reserve, start, record; a start failure ends the launch
        as failed. A GPU run that does not fit is refused, or queued when the operator chose so; `queue`: queued
        whatever the operator chose (a job the daemon starts on its own has nobody to refuse it to)."""
        self._govern(job)
        runner = self.runners[job.runner]
        run_dir = self.config.run_dir(job.name)
        refuse_held(job.type.works_in(job, run_dir))
        try:
            self.gpu.admit(job)
            if self.disk is not None:
                self.disk.admit(job, run_dir)
        except Refused as exc:
            if from_queue:
                raise  # still no room: the queue tries again at its next tick
            if not exc.queueable:
                raise unprocessable(str(exc)) from None
            mode = self.config.disk_admission if exc.rule == RULE_DISK else self.config.gpu_admission
            if mode != "queue" and not queue:
                raise conflict(str(exc)) from None
            try:
                self.registry.enqueue(job, run_dir, time.time(), exc.reason)
            except RunConflict as conflicting:
                raise conflict(str(conflicting)) from None
            log.info("%s job %s queued (%s): %s", job.kind, job.name, actor, exc.reason)
            return
        try:
            runner.check(job, run_dir)
        except RunnerRefusal as exc:
            raise unprocessable(str(exc)) from None
        nonce = secrets.token_hex(16)
        try:
            self.registry.reserve(job, run_dir, nonce, time.time(), from_queue=from_queue)
        except RunConflict as exc:
            raise conflict(str(exc)) from None
        try:
            started = runner.launch(job, run_dir, nonce, resume)
        except (OSError, subprocess.SubprocessError, RunnerRefusal, UnsafeFile) as exc:  # UnsafeFile: a planted log
            message = f"could not start the {job.kind} job ({runner.name} runner): {exc}"
            self._record(job.name, nonce, end=("failed", None, message))
            raise RequestError(500, message, "check the daemon's runner settings and the run dir") from None
        faults.pause("pause-after-spawn")
        self._record(job.name, nonce, started=started)
        if resume:
            since = kind_info(job.kind).resumes or "again"
            self.registry.add_event(job.name, "resume", f"resumed by {actor} {since}", time.time())
        log.info("%s %s job %s for %s (pid %d, container %s, nonce %s) in %s", "resumed" if resume else "launched",
                 job.kind, job.name, actor, started.pid, started.container, nonce, run_dir)

    def _record(self, name: str, nonce: str, started: Launched | None = None,
                end: tuple[RunState, int | None, str] | None = None) -> None:
        """The launch's start or failed end in the registry; on a full state dir, by the monitor once it can."""
        try:
            if started is not None:
                self.registry.set_running(name, nonce, started.pid, started.container)
            if end is not None:
                self.registry.finish(name, nonce, *end, time.time())
        except StateWriteError:
            if self.later is None:
                raise
            self.later(nonce, name, started=started, end=end)

    def launch_queued(self, record: RunRecord) -> None:
        """The GPU queue's start of `record`; Refused while it still does not fit, a failed start ends it."""
        with self.control:
            try:
                job = decode_job(record.kind, record.name, record.lane, record.surface, record.runner,
                                 record.spec_json, record.parent)
                resume = _has_checkpoints(Path(record.run_dir))  # a queued resume continues its checkpoints
                self.spawn(job, resume=resume, actor="the GPU queue", from_queue=True)
            except StateWriteError:
                raise  # the state dir is full: the queue tries again at its next tick
            except (SpecError, RequestError) as exc:
                why = exc.error if isinstance(exc, RequestError) else str(exc)
                self.registry.dequeue(record.name, f"could not start from the GPU queue: {why}", time.time(),
                                      state="failed")


def _has_checkpoints(run_dir: Path) -> bool:
    try:
        return bool(list_kept(run_dir))
    except CheckpointsUnreadable:
        return False
