"""The `gate` job kind without a daemon: its name, command line, mounts, record, and how its end is read.

test_daemon_gate_api.py runs gate jobs through a real daemon; these pin the
pieces it is built from, including the cases a live daemon rarely meets
(a verdict older than the launch, an exit code lost to a daemon restart).
"""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pytest

from qwen_daemon.jobs import job as jobs
from qwen_daemon.jobs.job import GateTarget, Job, RunnerRefusal, job_argv
from qwen_daemon.jobs.kinds import GATE, decode_job
from qwen_daemon.jobs.kinds.gate import gate_outcome, verdict_line
from qwen_daemon.protocol import gate_name
from qwen_daemon.runs.record import RunRecord
from qwen_train.atomic import atomic_write_bytes
from qwen_train.exitcodes import GATE_FAILED
from qwen_train.gate.verdict import verdict_path
from qwen_train.spec import RunSpec, SpecError, encode_spec
from tests.gate_fake import make_verdict


def gate_job(run_dir: Path, **options: object) -> Job:
    target = GateTarget(run="r1", run_dir=str(run_dir), **options)  # type: ignore[arg-type]
    return Job(GATE, gate_name("r1"), "benchmark", "lab", "process", target, parent="r1")


def test_the_command_line_is_the_gate_cli_contract(tmp_path: Path) -> None:
    job = gate_job(tmp_path / "r1", asr="/srv/asr", thresholds="/srv/t.json", checkpoint=500)
    argv = job_argv("/py", tmp_path / "r1.gate", job, "nonce-1", resume=True)
    assert argv == ["/py", "-m", "qwen_train", "gate", str(tmp_path / "r1"), "--checkpoint", "500",
                    "--asr", "/srv/asr", "--thresholds", "/srv/t.json"]
    bare = job_argv("/py", tmp_path / "r1.gate", gate_job(tmp_path / "r1"), "nonce-1", resume=False)
    assert bare == ["/py", "-m", "qwen_train", "gate", str(tmp_path / "r1")]  # no nonce, no --resume, no spec


def test_names_and_the_recorded_spec_round_trip(tmp_path: Path) -> None:
    assert gate_name("r1") == "r1.gate"
    long = gate_name("x" * 64)
    assert len(long) <= 64 and long.endswith(".gate") and long != gate_name("x" * 63 + "y")
    job = gate_job(tmp_path / "r1", asr="/srv/asr")
    back = decode_job("gate", job.name, job.lane, job.surface, job.runner, job.spec_bytes().decode(), "r1")
    assert back == job
    with pytest.raises(SpecError, match="invalid gate target"):
        decode_job("gate", job.name, job.lane, job.surface, job.runner, '{"run": "r1"}', "r1")


def test_a_container_sees_the_run_dir_writable_and_the_gate_inputs_read_only(tmp_path: Path) -> None:
    run_dir = tmp_path / "r1"
    run_dir.mkdir()
    spec = RunSpec(name="r1", lane="benchmark", model="/srv/models/base", bundle="/srv/bundles/b")
    (run_dir / jobs.SPEC_FILE).write_bytes(encode_spec(spec))
    paths = gate_job(run_dir, asr="/srv/asr", thresholds="/srv/t.json").paths()
    assert paths == [(run_dir, False, "run r1's dir"), (Path("/srv/models/base"), True, "spec.model"),
                     (Path("/srv/bundles/b"), True, "spec.bundle"), (Path("/srv/asr"), True, "gate.asr"),
                     (Path("/srv/t.json"), True, "gate.thresholds")]
    with pytest.raises(RunnerRefusal, match="cannot tell what the gate reads"):
        gate_job(tmp_path / "gone").paths()


def record(run_dir: Path, launched_at: float) -> RunRecord:
    target = GateTarget(run="r1", run_dir=str(run_dir))
    return RunRecord(name="r1.gate", lane="benchmark", surface="lab", runner="process", state="running",
                     nonce="n1", pid=1, run_dir=str(run_dir.parent / "r1.gate"), created_at=launched_at,
                     launched_at=launched_at, ended_at=None, exit_code=None,
                     spec_json=msgspec.json.encode(target).decode(), message=None, kind="gate", parent="r1")


def write_verdict(run_dir: Path, passed: bool, decided_at: float) -> None:
    atomic_write_bytes(verdict_path(run_dir), msgspec.json.encode(make_verdict(run_dir, 9, passed, decided_at)))


def test_exit_6_with_this_launchs_verdict_is_completed(tmp_path: Path) -> None:
    run_dir = tmp_path / "r1"
    now = time.time()
    write_verdict(run_dir, passed=False, decided_at=now + 1)
    state, message = gate_outcome(record(run_dir, now), GATE_FAILED, "failed", "trainer exited with code 6")
    assert (state, message) == ("completed", "gate did not pass: intelligibility failed (checkpoint step 9)")
    state, message = gate_outcome(record(run_dir, now), None, "interrupted", "lost")
    assert state == "completed" and message.endswith("(exit code unknown after a daemon restart; "
                                                     "the verdict is this launch's)")


def test_an_older_verdict_is_not_this_launchs_word(tmp_path: Path) -> None:
    run_dir = tmp_path / "r1"
    now = time.time()
    write_verdict(run_dir, passed=True, decided_at=now - 60)  # yesterday's gate passed; today's said nothing
    state, message = gate_outcome(record(run_dir, now), 0, "completed", "trainer exited with code 0 (completed)")
    assert state == "failed" and "this launch wrote no verdict" in message
    assert gate_outcome(record(run_dir, now), None, "interrupted", "lost it") == ("interrupted", "lost it")
    log = run_dir.parent / "r1.gate" / jobs.LOG_FILE
    log.parent.mkdir()
    log.write_text("=== t launch n1: gate\ngate: cannot read the run spec\n")
    assert gate_outcome(record(run_dir, now), 2, "failed", "x") == (
        "failed", "gate: cannot read the run spec (trainer exited with code 2)")


def test_the_verdict_line_names_failed_and_missing_criteria(tmp_path: Path) -> None:
    verdict = make_verdict(tmp_path, 3, passed=False)
    assert verdict_line(verdict) == "gate did not pass: intelligibility failed (checkpoint step 3)"
    partial = msgspec.structs.replace(make_verdict(tmp_path, 3, passed=True),
                                      criteria=make_verdict(tmp_path, 3, passed=True).criteria[:4])
    assert verdict_line(partial) == ("gate verdict says passed but does not judge speaking_rate, end_of_speech, "
                                     "quality, resource_evidence, provenance (checkpoint step 3)")
    assert verdict_line(make_verdict(tmp_path, 3, passed=True)) == "gate passed: all 9 criteria (checkpoint step 3)"
