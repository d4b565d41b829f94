"""When the daemon scores, decided tick by tick against a real registry, without launching anything.

The scheduler reads the registry and the run dirs as the daemon's does; the
launcher is replaced by one that records what it was asked to start. Pinned
here: a running run's newest durable checkpoint is asked for once (a launch
that ended without scoring it is not repeated, so a broken scorer cannot
loop), again only once the checkpoint is written anew at its step; an
interrupted launch is relaunched a bounded number of times; a run's end asks
for every kept checkpoint left; a run whose spec does not turn scores on is
never scored.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import msgspec
import pytest

from qwen_daemon.config import DaemonConfig
from qwen_daemon.jobs.job import Job, ScoreTarget
from qwen_daemon.jobs.kinds import SCORE, TRAIN
from qwen_daemon.jobs.scoring import MAX_RELAUNCHES, ScoreScheduler
from qwen_daemon.protocol import RunState
from qwen_daemon.runs.record import RunRecord
from qwen_daemon.runs.registry import Registry
from qwen_train.checkpoint_files import CKPT_DIR, checkpoint_name
from qwen_train.spec import RunSpec, ScoresSpec, encode_spec
from qwen_train.status import CheckpointRef, Status, write_status
from tests.scores_fake import make_scores, write_scores


class RecordingLauncher:
    """What the scheduler asks of the Launcher: its lock, the active children, and spawn (recorded here)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.control = threading.Lock()
        self.started: list[ScoreTarget] = []

    def active_children(self, run: str) -> list[RunRecord]:
        return []

    def spawn(self, job: Job, resume: bool, actor: str, from_queue: bool = False, queue: bool = False) -> None:
        assert isinstance(job.spec, ScoreTarget) and queue  # scoring is queued, never refused
        self.started.append(job.spec)


class World:
    def __init__(self, tmp: Path) -> None:
        self.config = DaemonConfig(state_dir=str(tmp / "state"), gate_asr="/srv/asr")
        self.registry = Registry(self.config.db_path)
        self.launcher = RecordingLauncher(self.registry)
        self.scheduler = ScoreScheduler(self.config, self.registry, self.launcher,  # type: ignore[arg-type]
                                        lambda _: None)
        self.spec_dir = tmp

    def run(self, name: str, scores: bool = True) -> Path:
        """A training run launched by this process (so its heartbeat is trusted), running."""
        spec = RunSpec(name=name, lane="benchmark", model=str(self.spec_dir / "m"), bundle=str(self.spec_dir / "b"),
                       scores=ScoresSpec(enabled=scores))
        run_dir = self.config.run_dir(name)
        run_dir.mkdir(parents=True)
        (run_dir / "spec.json").write_bytes(encode_spec(spec))
        job = Job(TRAIN, name, spec.lane, spec.surface, spec.runner, spec)
        self.registry.reserve(job, run_dir, f"nonce-{name}", time.time())
        self.registry.set_running(name, f"nonce-{name}", os.getpid())
        return run_dir

    def checkpoint(self, name: str, step: int) -> None:
        """A durable checkpoint dir, and the heartbeat that names it."""
        run_dir = self.config.run_dir(name)
        (run_dir / CKPT_DIR / checkpoint_name(step)).mkdir(parents=True, exist_ok=True)
        now = time.time()
        write_status(run_dir, Status(run_id=name, nonce=f"nonce-{name}", host=socket.gethostname(), pid=os.getpid(),
                                     state="training", heartbeat=now, started_at=now, step=step,
                                     last_checkpoint=CheckpointRef(step, str(run_dir), now)))

    def score_job_ended(self, run: str, state: RunState) -> None:
        """The last target the scheduler started, as RUN.score, launched now and ended in `state`."""
        target = self.launcher.started[-1]
        record = self.registry.get(run)
        assert record is not None
        job = Job(SCORE, f"{run}.score", record.lane, record.surface, record.runner, target, parent=run)
        nonce = f"n{len(self.launcher.started)}"
        self.registry.reserve(job, self.config.run_dir(job.name), nonce, time.time())
        self.registry.finish(job.name, nonce, state, None, "ended", time.time())

    def tick(self) -> list[ScoreTarget]:
        before = len(self.launcher.started)
        self.scheduler.tick(time.time())
        return self.launcher.started[before:]

    def end(self, name: str) -> None:
        self.registry.finish(name, f"nonce-{name}", "completed", 0, "done", time.time())
        record = self.registry.get(name)
        assert record is not None
        self.scheduler.run_ended(record)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def task(target: ScoreTarget) -> tuple[int | None, bool, bool, str | None]:
    return target.checkpoint, target.all_unscored, target.base, target.asr


def test_a_new_checkpoint_is_asked_for_once_and_again_only_when_written_anew(world: World) -> None:
    world.run("r1")
    assert world.tick() == []  # no checkpoint yet
    world.checkpoint("r1", 3)
    assert [task(t) for t in world.tick()] == [(3, False, True, "/srv/asr")]
    world.score_job_ended("r1", "failed")  # it said why; no scores were written
    assert world.tick() == []  # not again: a broken scorer must not loop
    time.sleep(0.01)
    world.checkpoint("r1", 3)  # a rollback wrote step 3 again, with other weights
    assert [t.checkpoint for t in world.tick()] == [3]
    world.score_job_ended("r1", "completed")
    write_scores(world.config.run_dir("r1"), make_scores(3))
    world.checkpoint("r1", 6)
    assert [t.checkpoint for t in world.tick()] == [6]


def test_an_interrupted_launch_is_relaunched_a_bounded_number_of_times(world: World) -> None:
    world.run("r1")
    world.checkpoint("r1", 3)
    assert len(world.tick()) == 1
    for _ in range(MAX_RELAUNCHES):
        world.score_job_ended("r1", "interrupted")
        assert [t.checkpoint for t in world.tick()] == [3]
    world.score_job_ended("r1", "interrupted")
    assert world.tick() == []


def test_a_runs_end_asks_for_every_kept_checkpoint_left_and_then_rests(world: World) -> None:
    run_dir = world.run("r1")
    world.checkpoint("r1", 3)
    world.checkpoint("r1", 6)
    write_scores(run_dir, make_scores(6))
    assert world.tick() == []  # the newest is scored; 3 waits for the run's end
    world.end("r1")
    assert [task(t) for t in world.tick()] == [(None, True, True, "/srv/asr")]
    world.score_job_ended("r1", "completed")
    write_scores(run_dir, make_scores(3))
    assert world.tick() == [] and world.tick() == []


def test_a_run_whose_spec_does_not_turn_scores_on_is_never_scored(world: World) -> None:
    world.run("quiet", scores=False)
    world.checkpoint("quiet", 3)
    assert world.tick() == []
    world.end("quiet")
    assert world.tick() == []


def test_the_last_target_is_read_back_from_the_registry(world: World) -> None:
    """After a daemon restart the scheduler knows only the registry: its RUN.score record's spec."""
    world.run("r1")
    world.checkpoint("r1", 3)
    world.tick()
    world.score_job_ended("r1", "failed")
    fresh = ScoreScheduler(world.config, world.registry, world.launcher, lambda _: None)  # type: ignore[arg-type]
    fresh.tick(time.time())
    assert len(world.launcher.started) == 1
    record = world.registry.get("r1.score")
    assert record is not None and msgspec.json.decode(record.spec_json, type=ScoreTarget).checkpoint == 3
