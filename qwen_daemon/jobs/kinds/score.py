"""Scoring as a job: `qwen_train score RUN_DIR [--checkpoint STEP|--all-unscored] [--base] [judges]`, job RUN.score.

The scorer listens to a training run's durable checkpoints (clones of its
listening set, judged) and writes RUN_DIR/scores/step-N.json, and base.json for
the base model; it skips what is scored already, so a launch killed mid-way
loses nothing and the next one resumes. When to score is the daemon's
scheduler's business (jobs/scoring.py); this kind is what a launch is: its
command line, what a container sees (the run's dir writable, its model, bundle
and judges' models read-only), the spec GPU admission plans it by (`beside`: the
run's own, as scoring loads the run's model), and how its end reads.

Unlike a gate or a replay it runs while its run trains: it takes no lock on the
run's dir (only its own dir's, which keeps it to one launch at a time), and a
run's launch or resume does not wait for it. It still never runs beside the
run's gate or replay (rule one-job-per-run), which read the scores or the
checkpoints it reads. Operators do not start it; `resume RUN.score` relaunches
the last one.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from qwen_daemon.jobs.job import LOG_FILE, BesideLoad, Job, JobContext, Paths, ScoreTarget, describe_exit
from qwen_daemon.jobs.kinds.children import ChildKind, child_job, parent_paths, parent_spec, refuse_busy
from qwen_daemon.protocol import KINDS, LaunchRequest, RunScores, RunState, best_step, kind_info, score_name
from qwen_daemon.protocol.errors import bad_request, unprocessable
from qwen_daemon.protocol.scores import score_point
from qwen_daemon.runs.readers import last_line
from qwen_daemon.runs.record import RunRecord
from qwen_daemon.runs.scores import ScoresReader
from qwen_train.scores.record import Scores

_READER = ScoresReader()


def _target(job: Job) -> ScoreTarget:
    assert isinstance(job.spec, ScoreTarget), f"{job.name} is no scoring job"
    return job.spec


def what_it_scores(target: ScoreTarget) -> str:
    """The launch's task in words, for events and refusals."""
    task = f"checkpoint step {target.checkpoint}" if target.checkpoint is not None else (
        "every kept checkpoint without scores" if target.all_unscored else "nothing but the base model")
    return task + (" (and the base model, once)" if target.base and (target.checkpoint or target.all_unscored)
                   else "")


def scores_of(record: RunRecord) -> RunScores | None:
    """The scores of the run a scoring job's record works on (None for a record whose spec no longer decodes)."""
    try:
        target = msgspec.json.decode(record.spec_json, type=ScoreTarget)
    except msgspec.MsgspecError:
        return None
    return _READER.run_scores(target.run, Path(target.run_dir))


def fresh_scores(record: RunRecord, found: RunScores | None) -> list[Scores]:
    """The records this launch wrote (measured since it started), base first, then by step."""
    every = ([found.base] if found.base else []) + found.checkpoints if found is not None else []
    return [s for s in every if s.measured_at >= record.launched_at]


def scored_line(fresh: list[Scores], all_scored: list[Scores]) -> str:
    """What a launch scored, with the best checkpoint as it stands now."""
    steps = [s.step for s in fresh if s.step is not None]
    parts = [f"step{'s' if len(steps) > 1 else ''} {', '.join(map(str, steps))}"] if steps else []
    parts += ["the base model"] if any(s.step is None for s in fresh) else []
    best = best_step([score_point(s) for s in all_scored])
    return f"scored {' and '.join(parts)}" + (f"; best checkpoint: step {best}" if best is not None else "")


class ScoreKind(ChildKind):
    target_type = ScoreTarget
    info = KINDS["score"]
    subcommand = "score"

    def for_run(self, record: RunRecord, target: ScoreTarget, ctx: JobContext) -> Job:
        """RUN.score for a training run (active or not) whose gate or replay is not running."""
        if not kind_info(record.kind).trains:
            raise unprocessable(f"{record.name!r} is a {record.kind} job: only training runs are scored")
        name = score_name(record.name)
        refuse_busy(record.name, [c for c in ctx.active_children(record.name) if c.name != name], "scoring")
        target = msgspec.structs.replace(target, run=record.name, run_dir=record.run_dir)
        return child_job(self, name, record, target)

    def paths(self, job: Job) -> Paths:
        target = _target(job)
        judges = (("gate.asr", target.asr), ("gate.verifier", target.verifier))
        return parent_paths(target, "scoring") + [(Path(path), True, field) for field, path in judges if path]

    def argv(self, python: str, run_dir: Path, job: Job, nonce: str, resume: bool) -> list[str]:
        target = _target(job)
        options = ["--checkpoint", str(target.checkpoint)] if target.checkpoint is not None else []
        options += ["--all-unscored"] if target.all_unscored else []
        options += ["--base"] if target.base else []
        options += ["--asr", target.asr] if target.asr is not None else []
        options += ["--verifier", target.verifier] if target.verifier is not None else []
        options += ["--device", target.device] if target.device is not None else []
        return [python, "-m", "qwen_train", self.subcommand, target.run_dir, *options]

    def works_in(self, job: Job, run_dir: Path) -> Path:
        """Its own dir: the run's trainer holds the run's lock while it trains, and scoring runs beside it."""
        return run_dir

    def beside(self, job: Job) -> BesideLoad:
        """The scored run's model (SpecError when its dir no longer holds a spec) and the ASR judge."""
        target = _target(job)
        return BesideLoad(parent_spec(target), target.asr)

    def from_request(self, request: LaunchRequest) -> Job:
        raise bad_request("a scoring job is started by the daemon when a run writes a durable checkpoint "
                          "(and once it ends); `qwen-daemon resume RUN.score` runs the last one again")

    def relaunch(self, job: Job, ctx: JobContext) -> Job:
        """The same task, on a run that is still there and still no other child's."""
        target = _target(job)
        return self.for_run(ctx.record(target.run), target, ctx)

    def outcome(self, record: RunRecord, code: int | None, state: RunState, message: str) -> tuple[RunState, str]:
        """What it scored (and the best checkpoint now), else its last line of output."""
        found = scores_of(record)
        fresh = fresh_scores(record, found)
        if code == 0:
            if found is None or not fresh:
                return "completed", "wrote no new scores: what it was given was scored already"
            return "completed", scored_line(fresh, found.checkpoints)
        kept = f"; {len(fresh)} record{'s' if len(fresh) != 1 else ''} written before it ended are kept" if fresh \
            else ""
        line = last_line(Path(record.run_dir) / LOG_FILE, after=record.nonce) if code is not None and code >= 0 \
            else None
        said = f"{line} ({describe_exit(code)})" if line else message
        return state, said + kept


SCORE = ScoreKind()

