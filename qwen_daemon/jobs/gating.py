"""The promotion gate as the daemon sees it: resource evidence, the gate job, the verdict.

The gate itself (`qwen-train gate RUN_DIR`) judges a run and writes its
verdict; the daemon's part is what only the daemon can do. It alone holds a
run's resource samples, so it writes the run's ResourceSummary into
RUN_DIR/resources.json (whenever a launch of the run ends, and again right
before a gate job starts, so a gate always reads the latest). It launches the
gate as a job of its own (RUN.gate, a child of RUN like a diagnose replay)
only on an ended training run, with host paths it has checked. It serves the
verdict file back, turning "not there yet" and "unreadable" into answers an
operator can act on, never a 500. And it words how a gate job ended: exit
GATE_FAILED is a gate that ran and said no, a completed job.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import msgspec

from qwen_daemon.config import BindRoot
from qwen_daemon.jobs import bindroots
from qwen_daemon.jobs.job import LOG_FILE, GateTarget, Job, RunnerRefusal, describe_exit
from qwen_daemon.protocol import GateRequest, ResourceSummary, RunState, gate_name
from qwen_daemon.protocol.errors import RequestError, bad_request, conflict, unprocessable
from qwen_daemon.resources.summary_cache import SummaryCache
from qwen_daemon.runs.readers import last_line
from qwen_daemon.runs.registry import RunRecord
from qwen_train.atomic import atomic_write_bytes
from qwen_train.exitcodes import GATE_FAILED
from qwen_train.gate.verdict import CRITERIA, GateVerdict, read_verdict, verdict_path

log = logging.getLogger(__name__)

RESOURCES_FILE = "resources.json"
RULE_ENDED = "gate-ended-run"
RULE_TRAINING = "gate-training-run"
RULE_ALONE = "one-job-per-run"  # a gate and a diagnose replay of one run never run at once


def refuse_busy(run: str, children: list[RunRecord], wanted: str) -> None:
    """409 naming RULE_ALONE while a child job of `run` (RUN.diagnose, RUN.gate) is active."""
    if not children:
        return
    child = children[0]
    doing = "replaying" if child.kind == "diagnose" else "judging"
    raise conflict(f"refused by rule {RULE_ALONE}: {child.kind} job {child.name!r} is {doing} run {run!r}; "
                   f"a {wanted} job starts only once it has ended: wait for it "
                   f"(or `qwen-daemon stop {child.name}`)")


def write_resources(run_dir: Path, summary: ResourceSummary) -> Path:
    """RUN_DIR/resources.json, atomically, readable by a container user (the gate may run in one)."""
    path = run_dir / RESOURCES_FILE
    atomic_write_bytes(path, msgspec.json.format(msgspec.json.encode(summary), indent=2) + b"\n")
    os.chmod(path, 0o644)
    return path


class Evidence:
    """Writes training runs' resource summaries (the API's, from the summary cache) into their run dirs."""

    def __init__(self, summaries: SummaryCache) -> None:
        self.summaries = summaries

    def write(self, record: RunRecord) -> Path:
        path = write_resources(Path(record.run_dir), self.summaries.get(record.name, time.time()))
        log.info("resource evidence of run %s written to %s", record.name, path)
        return path

    def launch_ended(self, record: RunRecord) -> None:
        """The monitor's hook: a training run's launch ended, so its summary now covers all of it."""
        if record.kind == "train":
            self.write(record)

    def before_gate(self, record: RunRecord) -> None:
        """The gate must not judge yesterday's evidence; a run dir the daemon cannot write is its fault (500)."""
        try:
            self.write(record)
        except OSError as exc:
            raise RequestError(500, f"could not write run {record.name}'s resource evidence: {exc}",
                               "the daemon must be able to write the run dir") from None


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


def with_defaults(request: GateRequest, asr: str, thresholds: str) -> GateRequest:
    """The daemon's configured ASR model and thresholds fill what the request leaves out (empty: none)."""
    return msgspec.structs.replace(request, asr=request.asr if request.asr is not None else asr or None,
                                   thresholds=request.thresholds if request.thresholds is not None
                                   else thresholds or None)


def check_gate_request(request: GateRequest, roots: list[BindRoot]) -> None:
    """What can be refused before looking at the run: a bad step, a bad or unreachable path."""
    if request.checkpoint is not None and request.checkpoint < 1:
        raise bad_request(f"checkpoint {request.checkpoint} is no optimizer step: steps count from 1")
    if request.asr is not None:
        _input_path(request.asr, "gate.asr", True, roots)
    if request.thresholds is not None:
        _input_path(request.thresholds, "gate.thresholds", False, roots)


def request_of(target: GateTarget) -> GateRequest:
    """The request a recorded gate job came from (a resume checks it again)."""
    return GateRequest(asr=target.asr, thresholds=target.thresholds, checkpoint=target.checkpoint)


def gate_job(record: RunRecord, request: GateRequest, children: list[RunRecord]) -> Job:
    """The job RUN.gate for an ended training run that no child job (`children`: the active ones) is
    working on; 422/409 naming the rule otherwise."""
    if record.kind != "train":
        raise unprocessable(f"refused by rule {RULE_TRAINING}: {record.name!r} is a {record.kind} job; "
                            "the promotion gate judges training runs only")
    if record.active:
        raise conflict(f"refused by rule {RULE_ENDED}: run {record.name!r} is {record.state}; the gate judges a "
                       f"run only once it has ended: stop it first (`qwen-daemon stop {record.name} --wait`)")
    refuse_busy(record.name, children, "gate")
    target = GateTarget(run=record.name, run_dir=record.run_dir, asr=request.asr, thresholds=request.thresholds,
                        checkpoint=request.checkpoint)
    return Job("gate", gate_name(record.name), record.lane, record.surface, record.runner, target,
               parent=record.name)


def read_run_verdict(run: str, run_dir: Path) -> GateVerdict:
    """Run `run`'s verdict: 404 while there is none, 422 with the reader's message for a corrupt one."""
    path = verdict_path(run_dir)
    try:
        return read_verdict(path)
    except ValueError as exc:
        if not path.exists():
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
        verdict = read_verdict(verdict_path(Path(target.run_dir)))
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
