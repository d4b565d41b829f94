"""The promotion gate as a job: `qwen_train gate RUN_DIR`, job RUN.gate of an ended training run.

The gate itself judges a run and writes RUN_DIR/gate/verdict.json; the
daemon's part is what only it can do. It launches the gate only on an ended
training run, with host paths it has checked (absolute, present, under its
bind roots where it has any, since the gate may run in a container), after
rewriting the run's resource evidence (resources/evidence.py) so the gate
never judges yesterday's. It serves the verdict file back, turning "not there
yet" and "unreadable" into answers an operator can act on, never a 500 (and
never a wait: the gate's file is read as any run-dir file, without blocking on a
FIFO, bounded, regular files only). And it
words how a gate job ended: exit GATE_FAILED is a gate that ran and said no, a
completed job.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from qwen_daemon.config import BindRoot, DaemonConfig
from qwen_daemon.jobs import bindroots
from qwen_daemon.jobs.job import LOG_FILE, GateTarget, Job, JobContext, Paths, RunnerRefusal, describe_exit
from qwen_daemon.jobs.kinds.children import ChildKind, child_job, parent_paths, refuse_busy
from qwen_daemon.protocol import KINDS, GateRequest, LaunchRequest, RunState, gate_name, kind_info
from qwen_daemon.protocol.errors import RequestError, bad_request, conflict, unprocessable
from qwen_daemon.runs.readers import last_line
from qwen_daemon.runs.record import RunRecord
from qwen_train.exitcodes import GATE_FAILED
from qwen_train.gate.verdict import CRITERIA, GateVerdict, verdict_path
from qwen_train.safe_read import MiB, decode_json, read_regular

RULE_ENDED = "gate-ended-run"
RULE_TRAINING = "gate-training-run"
VERDICT_LIMIT = 16 * MiB  # one criterion per line of a few hundred bytes: a verdict is a few KiB


def _target(job: Job) -> GateTarget:
    assert isinstance(job.spec, GateTarget), f"{job.name} is no gate job"
    return job.spec


def _input_path(value: str, field: str, want_dir: bool, roots: list[BindRoot]) -> None:
    """An absolute path that exists here (a dir or a file as wanted), under a bind root where there are any."""
    if not Path(value).is_absolute():
        raise bad_request(f"{field} {value!r} is a relative path: give the absolute path on the daemon's host")
    path = Path(value)
    found = path.is_dir() if want_dir else path.is_file()
    if not found:
        kind = "directory" if want_dir else "file"
        raise unprocessable(f"{field} {value} is not a {kind} on the daemon's host: fix the path")
    if roots:  # the gate may run in a container, which sees only the bind roots
        try:
            bindroots.docker_source(path, roots, field)
        except RunnerRefusal as exc:
            raise unprocessable(str(exc)) from None


def with_defaults(request: GateRequest, config: DaemonConfig) -> GateRequest:
    """The daemon's configured ASR model, verifier and thresholds fill what the request leaves out (empty: none)."""
    def pick(asked: str | None, configured: str) -> str | None:
        return asked if asked is not None else configured or None

    return msgspec.structs.replace(request, asr=pick(request.asr, config.gate_asr),
                                   verifier=pick(request.verifier, config.gate_verifier),
                                   thresholds=pick(request.thresholds, config.gate_thresholds))


def check_gate_request(request: GateRequest, roots: list[BindRoot]) -> None:
    """What can be refused before looking at the run: a bad step, a bad or unreachable path."""
    if request.checkpoint is not None and request.checkpoint < 1:
        raise bad_request(f"checkpoint {request.checkpoint} is no optimizer step: steps count from 1")
    if request.asr is not None:
        _input_path(request.asr, "gate.asr", True, roots)
    if request.verifier is not None:
        _input_path(request.verifier, "gate.verifier", True, roots)
    if request.thresholds is not None:
        _input_path(request.thresholds, "gate.thresholds", False, roots)


def request_of(target: GateTarget) -> GateRequest:
    """The request a recorded gate job came from (a resume checks it again)."""
    return GateRequest(asr=target.asr, thresholds=target.thresholds, checkpoint=target.checkpoint,
                       verifier=target.verifier)


def load_verdict(path: Path) -> GateVerdict:
    """The verdict file, in qwen_train.gate.verdict.read_verdict's words: ValueError naming the file when it is
    missing, no regular file, over its bound, truncated or not a verdict."""
    try:
        return decode_json(read_regular(path, VERDICT_LIMIT, what="gate verdict", nofollow=True), GateVerdict,
                           "its JSON")
    except FileNotFoundError:
        raise ValueError(f"{path}: no gate verdict yet (run `qwen-train gate RUN_DIR`)") from None
    except (OSError, ValueError) as exc:
        why = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
        raise ValueError(f"{path}: unreadable gate verdict ({why}); run the gate again to rewrite it") from None


def read_run_verdict(run: str, run_dir: Path) -> GateVerdict:
    """Run `run`'s verdict: 404 while there is none, 422 with the reader's message for a corrupt one."""
    path = verdict_path(run_dir)
    try:
        return load_verdict(path)
    except ValueError as exc:
        if not path.exists() and not path.is_symlink():
            raise RequestError(404, f"no gate verdict yet: POST /runs/{run}/gate",
                               f"`qwen-daemon gate {run}` runs the gate, which writes {path}") from None
        raise unprocessable(str(exc)) from None


def verdict_line(verdict: GateVerdict) -> str:
    """The verdict in one line: passed, or which criteria failed (and any the verdict left out)."""
    where = f"checkpoint step {verdict.checkpoint_step}"
    named = {criterion.name for criterion in verdict.criteria}
    absent = [name for name in CRITERIA if name not in named]
    missing = f"; not judged: {', '.join(absent)}" if absent else ""
    if verdict.passed:
        if absent:
            return f"gate verdict says passed but does not judge {', '.join(absent)} ({where})"
        return f"gate passed: all {len(verdict.criteria)} criteria ({where})"
    failed = [criterion.name for criterion in verdict.criteria if not criterion.passed]
    return f"gate did not pass: {', '.join(failed) or 'no criterion'} failed{missing} ({where})"


def _fresh_verdict(record: RunRecord) -> GateVerdict | None:
    """The verdict in the gated run's dir, if this launch decided it."""
    try:
        target = msgspec.json.decode(record.spec_json, type=GateTarget)
        verdict = load_verdict(verdict_path(Path(target.run_dir)))
    except (msgspec.MsgspecError, ValueError):
        return None
    return verdict if verdict.decided_at >= record.launched_at else None


def gate_outcome(record: RunRecord, code: int | None, state: RunState, message: str) -> tuple[RunState, str]:
    """A gate job's end in its own words. Exit 0 or GATE_FAILED with this launch's verdict: completed,
    with the verdict's line; either exit without one is a gate that failed to say anything (failed)."""
    verdict = _fresh_verdict(record)
    if code in (0, GATE_FAILED) or (code is None and verdict is not None):
        if verdict is None:
            return "failed", (f"{describe_exit(code)} but this launch wrote no verdict "
                              f"({record.run_dir}/{LOG_FILE} says why)")
        late = " (exit code unknown after a daemon restart; the verdict is this launch's)" if code is None else ""
        return "completed", verdict_line(verdict) + late
    line = last_line(Path(record.run_dir) / LOG_FILE, after=record.nonce) if code is not None and code >= 0 else None
    return state, f"{line} ({describe_exit(code)})" if line else message


class GateKind(ChildKind):
    target_type = GateTarget
    info = KINDS["gate"]
    subcommand = "gate"

    def for_run(self, name: str, request: GateRequest, ctx: JobContext) -> Job:
        """The checked RUN.gate, after (re)writing the run's resource evidence for it to read."""
        request = with_defaults(request, ctx.config)
        check_gate_request(request, ctx.config.bind_roots)
        record = ctx.record(name)
        job = self._job(record, request, ctx.active_children(record.name))
        ctx.write_evidence(record)
        return job

    def _job(self, record: RunRecord, request: GateRequest, children: list[RunRecord]) -> Job:
        """RUN.gate for an ended training run that no child job (`children`: the active ones) is
        working on; 422/409 naming the rule otherwise."""
        if not kind_info(record.kind).trains:
            raise unprocessable(f"refused by rule {RULE_TRAINING}: {record.name!r} is a {record.kind} job; "
                                "the promotion gate judges training runs only")
        if record.active:
            raise conflict(f"refused by rule {RULE_ENDED}: run {record.name!r} is {record.state}; the gate judges "
                           f"a run only once it has ended: stop it first (`qwen-daemon stop {record.name} --wait`)")
        refuse_busy(record.name, children, "gate")
        target = GateTarget(run=record.name, run_dir=record.run_dir, asr=request.asr, verifier=request.verifier,
                            thresholds=request.thresholds, checkpoint=request.checkpoint)
        return child_job(self, gate_name(record.name), record, target)

    def paths(self, job: Job) -> Paths:
        target = _target(job)
        inputs = (("gate.asr", target.asr), ("gate.verifier", target.verifier), ("gate.thresholds", target.thresholds))
        return parent_paths(target, "the gate") + [(Path(path), True, field) for field, path in inputs
                                                   if path is not None]

    def argv(self, python: str, run_dir: Path, job: Job, nonce: str, resume: bool) -> list[str]:
        target = _target(job)
        options = [] if target.checkpoint is None else ["--checkpoint", str(target.checkpoint)]
        options += [] if target.asr is None else ["--asr", target.asr]
        options += [] if target.verifier is None else ["--verifier", target.verifier]
        options += [] if target.thresholds is None else ["--thresholds", target.thresholds]
        return [python, "-m", "qwen_train", self.subcommand, target.run_dir, *options]

    def from_request(self, request: LaunchRequest) -> Job:
        raise bad_request("a gate job judges an ended run: start it with POST /runs/{name}/gate")

    def relaunch(self, job: Job, ctx: JobContext) -> Job:
        target = _target(job)
        return self.for_run(target.run, request_of(target), ctx)

    def outcome(self, record: RunRecord, code: int | None, state: RunState, message: str) -> tuple[RunState, str]:
        return gate_outcome(record, code, state, message)


GATE = GateKind()
