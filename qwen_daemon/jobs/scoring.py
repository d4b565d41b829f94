"""When the daemon scores: each new durable checkpoint while a run trains, every kept one once it has ended.

Only runs whose spec turns listening scores on (`scores.enabled`: their
retention then waits for the scores and keeps the best) are scored; `qwen-train
score` scores any run by hand. Every few seconds, for each such run: while it
runs, its trusted status's last checkpoint is the one to score (`--checkpoint
STEP`) if it has no scores yet; once the run has ended (any end: a stopped or
failed run's checkpoints are candidates too), every kept checkpoint without
scores (`--all-unscored`). Each launch also asks for the base model's row
(`--base`), the reference, which the scorer scores once and skips while it is
current. The job is RUN.score, one launch at a time: a checkpoint written while
it scores another waits for it (or for the run's end, which catches them all).

A launch goes through the Launcher like any other (governance, GPU admission
by the memory plan: sharing/beside.py), but it is always queued, never refused,
when the card has no room: nobody asked for it, so there is nobody to refuse,
and it must score later. The daemon relaunches what was killed from outside
(`interrupted`: the scorer skips what it wrote, so nothing is lost) up to
MAX_RELAUNCHES times in a row; a launch that failed or that an operator stopped
is not retried for the same task (`qwen-daemon resume RUN.score` does that),
so a broken scorer cannot loop. Nothing waits on a run's gate or replay: it is
simply tried again at a later tick.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from qwen_daemon.config import DaemonConfig
from qwen_daemon.jobs.job import ScoreTarget
from qwen_daemon.jobs.kinds.score import SCORE, what_it_scores
from qwen_daemon.jobs.launcher import Launcher
from qwen_daemon.protocol import ACTIVE_STATES, PENDING_STATES, kind_info, score_name
from qwen_daemon.protocol.errors import RequestError
from qwen_daemon.runs.record import RunRecord
from qwen_daemon.runs.registry import Registry
from qwen_daemon.runs.run_view import run_view
from qwen_daemon.runs.scores import ScoresReader, unscored
from qwen_daemon.ticker import Ticker
from qwen_train.spec import SpecError, decode_spec

log = logging.getLogger(__name__)

TICK_S = 2.0
MAX_RELAUNCHES = 3
ACTOR = "the daemon's scoring"
Members = Callable[[RunRecord], "list[int] | None"]
_Task = tuple[int | None, bool]  # (checkpoint, all_unscored): what a launch is for


@dataclass(frozen=True)
class _Wanted:
    """A task a run wants, and since when: a launch of the same task before then did not score this (a
    checkpoint written again at its step, a run that ended again)."""

    target: ScoreTarget
    since: float


def _task(target: ScoreTarget) -> _Task:
    return target.checkpoint, target.all_unscored


def _last_target(job: RunRecord | None) -> ScoreTarget | None:
    if job is None:
        return None
    try:
        return msgspec.json.decode(job.spec_json, type=ScoreTarget)
    except msgspec.MsgspecError:
        return None


class ScoreScheduler:
    """Starts RUN.score when a run has something to score. Its own thread; launches under the Launcher's lock."""

    def __init__(self, config: DaemonConfig, registry: Registry, launcher: Launcher, members: Members) -> None:
        self.config = config
        self.registry = registry
        self.launcher = launcher
        self.members = members
        self.reader = ScoresReader()
        self._ended: set[str] = set()  # ended runs whose kept checkpoints may still want scores
        self._relaunches: dict[str, int] = {}  # run -> relaunches of an interrupted task in a row
        self._refused: dict[str, _Task] = {}  # run -> a task the launcher refused (not tried again)
        self._specs: dict[tuple[str, float], str | None] = {}  # (run, launched_at) -> what _scored_on says
        self._ticker = Ticker("scoring", TICK_S, self.tick)

    def start(self) -> None:
        """Ended runs that were scored before may have checkpoints a restart kept from their end's scoring."""
        names = {r.name for r in self.registry.all()}
        for record in self.registry.all():
            if kind_info(record.kind).trains and not record.active and score_name(record.name) in names:
                self._ended.add(record.name)
        self._ticker.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._ticker.stop(timeout)

    def run_ended(self, record: RunRecord) -> None:
        """The monitor's end hook: a training run's end asks for every kept checkpoint to be scored."""
        if kind_info(record.kind).trains:
            self._ended.add(record.name)

    def tick(self, now: float) -> None:
        records = self.registry.all()
        by_name = {r.name: r for r in records}
        busy = {r.parent for r in records if r.parent and r.state in ACTIVE_STATES}  # a child runs: try later
        for record in records:
            if kind_info(record.kind).trains and record.name not in busy:
                self._consider(record, by_name.get(score_name(record.name)), now)

    def _consider(self, run: RunRecord, job: RunRecord | None, now: float) -> None:
        """Launch RUN.score if `run` wants a task its last launch did not have (or had before what it scores was
        written), or the last launch of this task was interrupted."""
        if job is not None and job.state in PENDING_STATES:
            return
        wanted = self._wanted(run, now)
        if wanted is None or self._refused.get(run.name) == _task(wanted.target):
            return
        last = _last_target(job)
        if job is not None and last is not None and _task(last) == _task(wanted.target) and \
                job.launched_at >= wanted.since:
            if job.state != "interrupted" or self._relaunches.get(run.name, 0) >= MAX_RELAUNCHES:
                if wanted.target.all_unscored:
                    self._ended.discard(run.name)  # its end was scored (or failed to be: resume does that)
                return
            self._relaunches[run.name] = self._relaunches.get(run.name, 0) + 1
        else:
            self._relaunches.pop(run.name, None)
        self._launch(run, wanted.target)

    def _scored_on(self, run: RunRecord) -> str | None:
        """"cpu" or "auto" where the run's spec turns scores on (`scores.enabled`), None where it does not (or no
        longer decodes); read once per launch of the run."""
        key = (run.name, run.launched_at)
        if key not in self._specs:
            try:
                spec = decode_spec(run.spec_json, source=f"run {run.name}")
                self._specs[key] = ("cpu" if spec.train.device == "cpu" else "auto") if spec.scores.enabled else None
            except SpecError:
                self._specs[key] = None
        return self._specs[key]

    def _judged(self, run: RunRecord, target: ScoreTarget) -> ScoreTarget:
        """`target` with the gate's judges and, for a run that trains on the CPU, the CPU."""
        return msgspec.structs.replace(target, asr=self.config.gate_asr or None,
                                       verifier=self.config.gate_verifier or None,
                                       device="cpu" if self._scored_on(run) == "cpu" else None)

    def _wanted(self, run: RunRecord, now: float) -> _Wanted | None:
        """What `run` wants scored now, or None (nothing, or its spec does not turn scores on). The base model
        is always asked for too: the scorer scores it once and skips it while its row is current."""
        run_dir = Path(run.run_dir)
        if self._scored_on(run) is None:
            return None
        if run.state == "running":
            status = run_view(run, now, self.config.stale_after_s, self.members)[1]
            if status is None or status.last_checkpoint is None:
                return None
            step = status.last_checkpoint.step
            if step not in unscored(self.reader.run_scores(run.name, run_dir)):
                return None  # scored already, or not (or no longer) a kept durable checkpoint
            target = ScoreTarget(run.name, run.run_dir, checkpoint=step, base=True)
            return _Wanted(self._judged(run, target), status.last_checkpoint.written_at)
        if run.name not in self._ended or run.state in PENDING_STATES:
            return None
        if not unscored(self.reader.run_scores(run.name, run_dir)):
            self._ended.discard(run.name)
            return None
        target = ScoreTarget(run.name, run.run_dir, all_unscored=True, base=True)
        return _Wanted(self._judged(run, target), run.ended_at or 0.0)

    def _launch(self, run: RunRecord, target: ScoreTarget) -> None:
        """Start (or queue) RUN.score; a refusal is said once on the run's events, never retried for this task."""
        try:
            with self.launcher.control:
                job = SCORE.for_run(run, target, self.launcher)
                self.launcher.spawn(job, resume=False, actor=ACTOR, queue=True)
        except RequestError as exc:
            self._refused[run.name] = _task(target)
            why = exc.error + (f": {exc.detail}" if exc.detail else "")
            self.registry.add_event(run.name, "scoring", f"could not start scoring {what_it_scores(target)}: {why}",
                                    time.time())
            log.warning("run %s: scoring not started: %s", run.name, why)
            return
        self._refused.pop(run.name, None)
        self.registry.add_event(run.name, "scoring", f"{job.name}: scoring {what_it_scores(target)}", time.time())
