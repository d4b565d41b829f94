"""A diagnose replay: `qwen_train diagnose RUN_DIR [--step N]`, job RUN.diagnose of an ended run.

It replays run RUN from its nearest durable checkpoint to the step (default:
its last non-finite event) and writes RUN_DIR/diagnosis.json. It writes no
status.json (the replay must not touch its run's heartbeat) and carries its
nonce only in the environment. Its operator's line is what it produced: the
first line of the diagnosis it wrote, or, when it could not replay, its own
last line of output (e.g. "no durable checkpoint before step 5").
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from qwen_daemon.jobs.job import LOG_FILE, DiagnoseTarget, Job, JobContext, Paths, describe_exit
from qwen_daemon.jobs.kinds.children import ChildKind, child_job, parent_paths, refuse_busy
from qwen_daemon.protocol import KINDS, LaunchRequest, RunState, diagnose_name, kind_info
from qwen_daemon.protocol.errors import bad_request, conflict, unprocessable
from qwen_daemon.runs.readers import FileProblem, last_line, read_diagnosis
from qwen_daemon.runs.record import RunRecord
from qwen_train.status import Diagnosis


def _target(job: Job) -> DiagnoseTarget:
    assert isinstance(job.spec, DiagnoseTarget), f"{job.name} is no diagnose job"
    return job.spec


def _fresh_diagnosis(record: RunRecord) -> Diagnosis | None:
    """The diagnosis in the replayed run's dir, if this launch wrote it."""
    try:
        target = msgspec.json.decode(record.spec_json, type=DiagnoseTarget)
        diagnosis = read_diagnosis(Path(target.run_dir))
    except (msgspec.MsgspecError, FileProblem):
        return None
    return diagnosis if diagnosis is not None and diagnosis.created_at >= record.launched_at else None


class DiagnoseKind(ChildKind):
    target_type = DiagnoseTarget
    info = KINDS["diagnose"]
    subcommand = "diagnose"

    def for_run(self, record: RunRecord, step: int | None, ctx: JobContext) -> Job:
        """RUN.diagnose for an ended training run that no other child job is working on."""
        if not kind_info(record.kind).trains:
            raise unprocessable(f"{record.name!r} is a {record.kind} job: only training runs can be replayed")
        if record.active:
            raise conflict(f"run {record.name!r} is {record.state}: stop it first "
                           f"(`qwen-daemon stop {record.name} --wait`), then diagnose it")
        refuse_busy(record.name, ctx.active_children(record.name), "diagnose")
        target = DiagnoseTarget(run=record.name, run_dir=record.run_dir, step=step)
        return child_job(self, diagnose_name(record.name), record, target)

    def paths(self, job: Job) -> Paths:
        return parent_paths(_target(job), "the replay")

    def argv(self, python: str, run_dir: Path, job: Job, nonce: str, resume: bool) -> list[str]:
        target = _target(job)
        step = [] if target.step is None else ["--step", str(target.step)]
        return [python, "-m", "qwen_train", self.subcommand, target.run_dir, *step]

    def from_request(self, request: LaunchRequest) -> Job:
        raise bad_request("a diagnose job replays a run: start it with POST /runs/{name}/diagnose")

    def relaunch(self, job: Job, ctx: JobContext) -> Job:
        """The replayed run must still be there and at rest."""
        target = _target(job)
        return self.for_run(ctx.record(target.run), target.step, ctx)

    def outcome(self, record: RunRecord, code: int | None, state: RunState, message: str) -> tuple[RunState, str]:
        """Its diagnosis's first line, else its last output line.

        Its exit code is lost when the daemon restarted during the replay; a diagnosis
        written by this launch then still says it completed (writing it is the replay's last act)."""
        diagnosis = _fresh_diagnosis(record)
        first = diagnosis.summary.strip().split("\n")[0] if diagnosis is not None else None
        if code is None:
            if state == "interrupted" and first is not None:
                return "completed", (f"{first} (exit code unknown after a daemon restart; "
                                     "the diagnosis is this launch's)")
            return state, message
        if state == "completed" and first is not None:
            return state, first
        line = last_line(Path(record.run_dir) / LOG_FILE, after=record.nonce) if code >= 0 else None
        if line is None:
            return state, message
        return state, f"{line} ({describe_exit(code)})" if code else line


DIAGNOSE = DiagnoseKind()
