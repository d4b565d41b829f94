"""The monitor: turns process facts into run states, once a second.

It reaps ended trainers and records how they ended (exit code mapped by
`qwen_train.exitcodes`, the trainer's own last message attached), escalates a
stop that the trainer ignores past `stop_timeout_s` to SIGKILL, and at daemon
start reconciles the registry with the processes that are really there.

A launch whose exit the daemon did not see (it was down), whose container
vanished, or that was killed from outside (a signal the daemon did not send)
is not a failure: if the launch's own final status.json names a terminal
state, that state is used; otherwise the run is `interrupted`, resumable
from its last durable checkpoint.

A job's kind has the last word on how its exit reads (`JobType.outcome`): a
diagnose job ends in its diagnosis's words, a gate job in its verdict's.

Whoever owns the monitor may ask to hear of every launch that ended
(`on_end`): the daemon writes a training run's resource evidence then.

On a full state dir the registry may refuse to record an end, a launch's
start or an event (a restart's reattachment among them): the monitor keeps
what it learned (`later`, `_note`) and records it at a later tick, once the
disk has room, so an exit code is never lost to a full disk and a daemon
restarted on one comes up.
A trainer that ended `failed_disk_full` is reported from its exit code, its
own words (status.json, else its log) and the daemon's reading of the free
space (runs/disk_end.py).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import cast

from qwen_daemon.config import DaemonConfig
from qwen_daemon.jobs.job import LOG_FILE, Exit, Launched, Runner, describe_exit
from qwen_daemon.jobs.kinds import KIND_TYPES
from qwen_daemon.protocol import RunState
from qwen_daemon.runs.disk_end import disk_full_outcome
from qwen_daemon.runs.record import RunRecord
from qwen_daemon.runs.registry import Registry
from qwen_daemon.runs.trust import check_final
from qwen_daemon.state_writes import StateWriteError
from qwen_daemon.ticker import Ticker
from qwen_train.exitcodes import COMPLETED, FAILED_DISK_FULL, FAILED_OOM, STOPPED, state_for_exit
from qwen_train.status import TERMINAL_STATES, Status

log = logging.getLogger(__name__)

TICK_S = 1.0
# Signals an operator or the system sends to end a process; a death by one of these that the
# daemon did not send is an interruption (resumable), not a failure of the run.
OUTSIDE_STOPS = frozenset({signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


class Monitor:
    def __init__(self, config: DaemonConfig, registry: Registry, runners: dict[str, Runner],
                 on_end: Callable[[RunRecord], None] | None = None) -> None:
        self.config = config
        self.registry = registry
        self.runners = runners
        self.on_end = on_end
        self._lock = threading.Lock()
        self._stop_asked: dict[str, float] = {}
        self._killed: dict[str, float] = {}
        self._ends: dict[str, tuple[RunState, int | None, str]] = {}  # by nonce: ends the registry refused
        self._starts: dict[str, tuple[str, Launched]] = {}  # by nonce: (name, started) the registry refused
        self._notes: list[tuple[str, str, str, float]] = []  # events (name, kind, message, time) it refused
        self._ticker = Ticker("monitor", TICK_S, self.tick)

    @property
    def alive(self) -> bool:
        return self._ticker.alive

    def start(self) -> None:
        self._ticker.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._ticker.stop(timeout)

    # start-up

    def runner(self, record: RunRecord) -> Runner:
        runner = self.runners.get(record.runner)
        if runner is None:
            raise KeyError(f"run {record.name} uses runner {record.runner!r}, which this daemon does not have")
        return runner

    def reconcile(self, now: float) -> None:
        """Reattach to launches that survived the daemon's restart; end the others."""
        for record in self.registry.active():
            if record.nonce is None:
                continue
            found = self.runner(record).adopt(record.nonce, record.pid, record.container)
            if found is None and record.pid is None:
                self._end(record, "interrupted", None, "the daemon stopped before the trainer started", now)
            elif found is None:
                lost = f"container {record.container} vanished while the daemon was down" if record.container else None
                self._reap(record, Exit(code=None, detail=lost), now)
            else:
                self._reattach(record, found, now)

    def _reattach(self, record: RunRecord, found: Launched, now: float) -> None:
        """Take a surviving launch back; on a full state dir (a restart is when the disk is likeliest to be
        full) what the registry refuses is recorded at a later tick, and the daemon comes up all the same."""
        assert record.nonce is not None
        if record.state == "launching" or found.pid != record.pid:
            try:
                self._record_start(record, found)
            except StateWriteError:
                self.later(record.nonce, record.name, started=found)
        where = f"container {found.container}" if found.container else f"pid {found.pid}"
        self._note(record.name, "reattach", f"reattached to {where} after a daemon restart", now)
        if record.state == "stopping":
            with self._lock:
                self._stop_asked[record.nonce] = now

    def _record_start(self, record: RunRecord, found: Launched) -> None:
        assert record.nonce is not None
        if record.state == "launching":
            self.registry.set_running(record.name, record.nonce, found.pid, found.container)
        else:  # a reattached container's init may have a new host pid
            self.registry.set_pid(record.name, record.nonce, found.pid, found.container)

    def _note(self, name: str, kind: str, message: str, now: float) -> None:
        """An event for the run's history, after any a full state dir refused; those wait for a later tick."""
        with self._lock:
            self._notes.append((name, kind, message, now))
        with contextlib.suppress(StateWriteError):  # reported already
            self._flush_notes()

    def _flush_notes(self) -> None:
        """The events a full state dir refused, oldest first; StateWriteError while it still does."""
        while True:
            with self._lock:
                if not self._notes:
                    return
                note = self._notes[0]
            self.registry.add_event(*note)
            with self._lock:
                self._notes.pop(0)

    # stop

    def request_stop(self, record: RunRecord, now: float) -> bool:
        """SIGTERM the launch and start the escalation clock; False if it was not running."""
        assert record.nonce is not None
        message = f"stop requested: SIGTERM sent, SIGKILL after {self.config.stop_timeout_s:g} s"
        try:
            marked = self.registry.mark_stopping(record.name, record.nonce, now, message)
        except StateWriteError:  # a full state dir: the stop is made all the same; its end is recorded later
            marked = record.state in ("launching", "running")
        if not marked:
            return False
        with self._lock:
            self._stop_asked.setdefault(record.nonce, now)  # asked again unrecorded: the clock runs from the first
        self.runner(record).terminate(record.nonce)
        return True

    def _escalate(self, record: RunRecord, now: float) -> None:
        nonce = record.nonce
        assert nonce is not None
        with self._lock:
            asked = self._stop_asked.get(nonce)
            if asked is None or nonce in self._killed:
                return
            if now - asked < self.config.stop_timeout_s:
                return
            self._killed[nonce] = now
        if self.runner(record).kill(nonce):
            self.registry.add_event(
                record.name, "kill",
                f"no exit {self.config.stop_timeout_s:g} s after SIGTERM: SIGKILL sent", now,
            )

    # reaping

    def later(self, nonce: str, name: str, started: Launched | None = None,
              end: tuple[RunState, int | None, str] | None = None) -> None:
        """A launch's start or end the registry could not record (a full state dir): the next ticks retry it."""
        with self._lock:
            if started is not None:
                self._starts[nonce] = (name, started)
            if end is not None:
                self._ends[nonce] = end

    def _recorded_start(self, record: RunRecord) -> bool:
        """True once a launch whose start was refused is recorded as running (or had nothing to record)."""
        assert record.nonce is not None
        with self._lock:
            pending = self._starts.get(record.nonce)
        if pending is None:
            return record.state != "launching"
        try:
            self._record_start(record, pending[1])
        except StateWriteError:
            return False
        with self._lock:
            self._starts.pop(record.nonce, None)
        return True

    def tick(self, now: float) -> None:
        with contextlib.suppress(StateWriteError):  # reported already; the next tick tries again
            self._flush_notes()
        for record in self.registry.active():
            if record.nonce is None:
                continue
            with self._lock:
                end = self._ends.pop(record.nonce, None)
            if end is not None:
                self._end(record, *end, now)
                continue
            if not self._recorded_start(record):
                continue
            ended = self.runner(record).poll(record.nonce)
            if ended is None:
                self._escalate(record, now)
            else:
                self._reap(record, ended, now)

    def _reap(self, record: RunRecord, ended: Exit, now: float) -> None:
        assert record.nonce is not None
        with self._lock:
            stopped = self._stop_asked.pop(record.nonce, None) is not None
            killed = self._killed.pop(record.nonce, None) is not None
        final = check_final(Path(record.run_dir), record.name, record.nonce).status
        state, message = outcome(record, ended, final, stopped, killed, self.config.stop_timeout_s)
        if final is not None and final.message and final.message not in message:
            message += f"; trainer said: {final.message}"
        kind = KIND_TYPES.get(record.kind)
        if kind is not None:
            state, message = kind.outcome(record, ended.code, state, message)
        self._end(record, state, ended.code, message, now)

    def _end(self, record: RunRecord, state: RunState, code: int | None, message: str, now: float) -> None:
        if record.nonce is None:  # reserve() always sets one; nothing to end without it
            log.warning("run %s is active without a launch nonce; left as is", record.name)
            return
        try:
            finished = self.registry.finish(record.name, record.nonce, state, code, message, now)
        except StateWriteError:
            self.later(record.nonce, record.name, end=(state, code, message))
            return
        if finished:
            log.info("run %s ended: %s (%s)", record.name, state, message)
            self._ended(record)

    def _ended(self, record: RunRecord) -> None:
        """Tell the owner; its failure is logged, never allowed to stop the reaping of other runs."""
        if self.on_end is None:
            return
        try:
            self.on_end(record)
        except Exception:
            log.exception("after run %s ended, its end hook failed", record.name)


def outcome(
    record: RunRecord, ended: Exit, final: Status | None, stopped: bool, killed: bool, stop_timeout_s: float
) -> tuple[RunState, str]:
    """The run state and the operator's one-line reason for how a launch ended."""
    code = ended.code
    if killed and (code is None or code < 0):
        return "failed", (
            f"did not exit within {stop_timeout_s:g} s of SIGTERM; killed with SIGKILL "
            "(no final checkpoint; resume starts from the last durable one)"
        )
    if stopped and code == -signal.SIGTERM:
        return "stopped", "ended by the stop's SIGTERM before the trainer could handle it (no final checkpoint)"
    if ended.oom:
        return "failed", (
            f"{ended.detail or 'out of memory'}; {describe_exit(code)}: give it more memory or a smaller batch"
        )
    if code is not None and code < 0 and not stopped and -code in OUTSIDE_STOPS:
        return "interrupted", (
            f"{describe_exit(code)}, which the daemon did not send (killed from outside); "
            f"resume from the last durable checkpoint with `qwen-daemon resume {record.name}`"
        )
    if code == FAILED_DISK_FULL:  # its words name the path, the bytes and the fix; the daemon adds what is free now
        return "failed_disk_full", disk_full_outcome(record, final)
    if code == FAILED_OOM:  # the trainer's own words name the micro-batch and the fix; keep them in front
        said = final.message if final is not None and final.state == "failed_oom" and final.message else (
            "the GPU ran out of memory in a step; no step was lost")
        # The daemon's resume relaunches the spec as recorded, which would run out of memory again.
        return "failed_oom", (f"{said} ({describe_exit(code)}; its newest durable checkpoint is intact: continue it "
                              f"with the smaller size through `qwen-train run SPEC --resume --run-dir "
                              f"{record.run_dir}`, as `qwen-daemon resume` reruns the recorded spec; see "
                              f"{Path(record.run_dir) / LOG_FILE})")
    if code is not None:
        state = cast(RunState, state_for_exit(code))
        hint = "" if code in (COMPLETED, STOPPED) else f"; see {Path(record.run_dir) / LOG_FILE}"
        return state, f"{describe_exit(code)} ({state}){hint}"
    if final is not None and final.state in TERMINAL_STATES:
        return cast(RunState, final.state), (
            "exit code unknown (not a child of this daemon since its restart); "
            f"state from the trainer's final status: {final.state}"
        )
    lost = ended.detail or f"pid {record.pid} gone"
    return "interrupted", (
        f"the daemon lost the trainer ({lost}, exit code unknown, no final status); "
        f"resume from the last durable checkpoint with `qwen-daemon resume {record.name}`"
    )
