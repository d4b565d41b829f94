"""What the child kinds (a diagnose replay, a gate, a scoring job) share: they work on another run, one at a time.

A child job RUN.diagnose, RUN.gate or RUN.score reads its run's checkpoints and
writes into its run dir, so it never starts beside another child of the same
run (rule one-job-per-run), and its container sees its run's dir, model and
bundle. A replay and a gate start only on an ended training run; a scoring job
also runs while its run trains (KindInfo.beside). Its spec records which run that is.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from qwen_daemon.jobs.job import SPEC_FILE, DiagnoseTarget, GateTarget, Job, JobType, Paths, RunnerRefusal, ScoreTarget
from qwen_daemon.protocol import kind_info
from qwen_daemon.protocol.errors import conflict
from qwen_daemon.runs.record import RunRecord
from qwen_train.safe_read import UnsafeFile, read_regular
from qwen_train.spec import MAX_SPEC_BYTES, RunSpec, SpecError, decode_spec

RULE_ALONE = "one-job-per-run"  # a gate, a diagnose replay and a scoring job of one run never run at once
ChildTarget = DiagnoseTarget | GateTarget | ScoreTarget


class _ChildOf(msgspec.Struct, frozen=True):
    run: str
    run_dir: str


def child_target(spec_json: str | bytes, name: str) -> tuple[str, Path]:
    """(run, run dir) that a child job works on, from its recorded spec; SpecError if malformed."""
    try:
        target = msgspec.json.decode(spec_json, type=_ChildOf)
    except msgspec.MsgspecError as exc:
        raise SpecError(f"run {name}'s recorded target is malformed: {exc}") from None
    return target.run, Path(target.run_dir)


def parent_spec(target: ChildTarget) -> RunSpec:
    """The replayed (or gated) run's spec, from its run dir (the spec its trainer was launched with).

    The daemon wrote it, but the run's trainer could replace it: read without blocking, bounded, no symlink."""
    path = Path(target.run_dir) / SPEC_FILE
    try:
        return decode_spec(read_regular(path, MAX_SPEC_BYTES, what="run spec", nofollow=True), source=str(path))
    except UnsafeFile as exc:
        raise SpecError(f"run {target.run}'s spec: {exc}") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read run {target.run}'s spec ({exc.strerror})") from None


def parent_paths(target: ChildTarget, what: str) -> Paths:
    """A child reads its run's model (the gate's base) and bundle and writes into its run dir."""
    try:
        parent = parent_spec(target)
    except SpecError as exc:
        raise RunnerRefusal(f"cannot tell what {what} reads: {exc}") from None
    return [(Path(target.run_dir), False, f"run {target.run}'s dir"), (Path(parent.model), True, "spec.model"),
            (Path(parent.bundle), True, "spec.bundle")]


def refuse_busy(run: str, children: list[RunRecord], wanted: str) -> None:
    """409 naming RULE_ALONE while a child job of `run` (RUN.diagnose, RUN.gate, RUN.score) is active."""
    if not children:
        return
    child = children[0]
    raise conflict(f"refused by rule {RULE_ALONE}: {child.kind} job {child.name!r} is "
                   f"{kind_info(child.kind).doing} run {run!r}; a {wanted} job starts only once it has ended: "
                   f"wait for it (or `qwen-daemon stop {child.name}`)")


def child_job(kind: JobType, name: str, record: RunRecord, target: ChildTarget) -> Job:
    return Job(kind, name, record.lane, record.surface, record.runner, target, parent=record.name)


class ChildKind(JobType):
    """A kind whose spec names the run it works on: decoded as `target_type`, locking that run's dir."""

    target_type: type[DiagnoseTarget] | type[GateTarget] | type[ScoreTarget]

    def decode(self, name: str, lane: str, surface: str, runner: str, spec_json: str, parent: str | None) -> Job:
        try:
            target = msgspec.json.decode(spec_json, type=self.target_type)
        except msgspec.MsgspecError as exc:
            raise SpecError(f"run {name}'s recorded spec: invalid {self.info.kind} target: {exc}") from None
        return Job(self, name, lane, surface, runner, target, parent)

    def works_in(self, job: Job, run_dir: Path) -> Path:
        """Its run's dir, which it writes into: it holds that dir's lock, as the run's trainer would."""
        assert isinstance(job.spec, ChildTarget), f"{job.name} is no child job"
        return Path(job.spec.run_dir)
