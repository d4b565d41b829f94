"""The promotion gate through a real daemon: resource evidence, the gate job, the verdict routes.

The daemon is a real `qwen-daemon serve`; its jobs are real processes it
launches: the contract-only fake trainer, and for `qwen_train gate` the fake
gate (gate_fake.py), which records what it was given and writes a verdict as
the real gate does. What is checked is the daemon's side of the contract: a
training run's resource summary lands in RUN_DIR/resources.json when it ends
(and again before its gate), the gate job gets the right command line and
ends `completed` on exit 6, every bad request is a 4xx naming what is wrong,
and the verdict file comes back as written, or as a 404 or 422, never a 500.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from qwen_daemon.protocol import GateVerdict, ResourceSummary, RunView
from qwen_train.atomic import atomic_write_bytes
from qwen_train.gate.verdict import verdict_path
from qwen_train.prepare.spec import PrepareSpec, SourceSpec
from tests.conftest import MakeDir, python_env
from tests.gate_fake import CALL_FILE, FIXTURE_FILE, RELEASE_FILE, gate_wrapper, make_verdict
from tests.test_daemon_harness import DaemonProcess, make_spec, raw_request, remove_tree, short_tmp_dir, wait_until

ACTIVE = ("launching", "running", "stopping")


@pytest.fixture(scope="module")
def short() -> Iterator[Path]:
    path = short_tmp_dir()
    (path / "srv" / "asr").mkdir(parents=True)
    (path / "srv" / "verifier").mkdir()
    (path / "srv" / "thresholds.json").write_text('{"intelligibility": 0.3}')
    yield path
    remove_tree(path)


@pytest.fixture(scope="module")
def daemon(short: Path, module_dir: MakeDir) -> Iterator[DaemonProcess]:
    proc = DaemonProcess(module_dir("state"), short / "g.sock", gate_wrapper(short),
                         "--sample-period", "0.2", "--stop-timeout", "5", "--journal-socket", "",
                         "--bind-root", str(short / "srv")).start()
    yield proc
    for view in proc.client.runs().runs:
        if view.state in ("launching", "running"):
            proc.client.stop(view.name)
    wait_until(lambda: all(v.state not in ACTIVE for v in proc.client.runs().runs), 15, "every job to end")
    proc.stop()


@pytest.fixture(scope="module")
def paths(module_dir: MakeDir) -> Path:
    root = module_dir("inputs")
    (root / "asr-outside").mkdir()
    (root / "model").mkdir()
    (root / "corpus.jsonl").write_text("")
    return root


def post(daemon: DaemonProcess, path: str, body: Any) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return raw_request(daemon.socket, "POST", path, data, {"Content-Type": "application/json"})


def expect(result: tuple[int, Any], status: int, *fragments: str) -> Any:
    code, body = result
    assert code == status, body
    for fragment in fragments:
        assert fragment in body["error"] + (body.get("detail") or ""), body
    return body


def ended(daemon: DaemonProcess, name: str, timeout: float = 60.0) -> RunView:
    def over() -> RunView | None:
        view = daemon.client.run(name).run
        return view if view.state not in ACTIVE else None

    return wait_until(over, timeout, f"{name} to end")


def finished_run(daemon: DaemonProcess, paths: Path, name: str, after_s: float = 1.0) -> RunView:
    """A training run that ran `after_s` seconds (sampled meanwhile) and completed."""
    run_dir = daemon.run_dir(name)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "fixture.json").write_text(json.dumps({"exit_after_s": after_s, "exit_code": 0}))
    daemon.client.launch(spec=make_spec(paths, name))
    view = ended(daemon, name)
    assert view.state == "completed", view
    return view


def gate_fixture(run_dir: Path, **fields: Any) -> None:
    (run_dir / FIXTURE_FILE).write_text(json.dumps(fields))


def call_of(run_dir: Path) -> dict[str, Any]:
    call: dict[str, Any] = json.loads((run_dir / "gate" / CALL_FILE).read_text())
    return call


def test_a_finished_run_leaves_its_resource_summary_in_its_run_dir(daemon: DaemonProcess, paths: Path) -> None:
    view = finished_run(daemon, paths, "evidence", after_s=1.5)
    run_dir = Path(view.run_dir)
    written = run_dir / "resources.json"
    wait_until(written.exists, 10, "resources.json")
    summary = msgspec.json.decode(written.read_bytes(), type=ResourceSummary)
    assert summary == daemon.client.run("evidence").summary  # the very summary the API serves
    assert summary.samples >= 2 and {"cpu_percent", "ram_used_bytes"} <= set(summary.metrics)
    assert summary.first is not None and view.ended_at is not None and summary.first <= view.ended_at
    assert stat.S_IMODE(written.stat().st_mode) == 0o644  # a gate container's user reads it
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]  # written atomically


def test_the_gate_gets_fresh_evidence_its_arguments_and_exit_6_is_completed(
    daemon: DaemonProcess, paths: Path, short: Path
) -> None:
    run_dir = Path(finished_run(daemon, paths, "judged").run_dir)
    wait_until(lambda: (run_dir / "resources.json").exists(), 10, "resources.json")
    (run_dir / "resources.json").unlink()  # the gate must still find one: the daemon writes it again first
    status_before = (run_dir / "status.json").read_bytes()
    gate_fixture(run_dir, exit_code=6, passed=False)
    asr, thresholds = short / "srv" / "asr", short / "srv" / "thresholds.json"
    verifier = short / "srv" / "verifier"
    view = daemon.client.gate("judged", asr=str(asr), thresholds=str(thresholds), checkpoint=3,
                              verifier=str(verifier))
    assert (view.name, view.kind, view.parent, view.lane) == ("judged.gate", "gate", "judged", "benchmark")
    job = ended(daemon, "judged.gate")
    assert (job.state, job.exit_code, job.health) == ("completed", 6, "ended"), job
    assert job.message == "gate did not pass: intelligibility failed (checkpoint step 3)"
    call = call_of(run_dir)
    assert call["argv"] == ["gate", str(run_dir), "--checkpoint", "3", "--asr", str(asr), "--verifier",
                            str(verifier), "--thresholds", str(thresholds)]
    assert call["nonce"] == job.nonce  # the nonce travels in the environment only
    assert msgspec.convert(call["resources"], ResourceSummary) == daemon.client.run("judged").summary
    assert not (Path(job.run_dir) / "status.json").exists()  # a gate job writes no heartbeat of its own
    assert (run_dir / "status.json").read_bytes() == status_before
    verdict = daemon.client.verdict("judged")
    assert verdict.passed is False and verdict.checkpoint_step == 3
    assert daemon.client.verdict("judged.gate") == verdict  # a gate job's verdict is its run's

    gate_fixture(run_dir, exit_code=0, passed=True)
    again = daemon.client.resume("judged.gate")  # the same gate, relaunched with what it was given
    assert again.nonce != job.nonce
    rerun = ended(daemon, "judged.gate")
    assert (rerun.state, rerun.exit_code) == ("completed", 0) and rerun.message is not None
    assert rerun.message.startswith("gate passed: all 9 criteria"), rerun.message
    assert call_of(run_dir)["argv"][-2:] == ["--thresholds", str(thresholds)]
    assert daemon.client.verdict("judged").passed is True


def test_a_gate_that_says_nothing_or_cannot_run_is_a_failed_job(daemon: DaemonProcess, paths: Path) -> None:
    run_dir = Path(finished_run(daemon, paths, "mute").run_dir)
    gate_fixture(run_dir, exit_code=6, verdict=False)
    daemon.client.gate("mute")
    job = ended(daemon, "mute.gate")
    assert (job.state, job.exit_code) == ("failed", 6), job
    assert "wrote no verdict" in (job.message or "") and "trainer.log" in (job.message or "")
    assert call_of(run_dir)["argv"] == ["gate", str(run_dir)]  # nothing given, nothing passed on
    expect(raw_request(daemon.socket, "GET", "/runs/mute/gate"), 404, "no gate verdict yet: POST /runs/mute/gate")

    gate_fixture(run_dir, exit_code=2, verdict=False)
    daemon.client.resume("mute.gate")
    job = ended(daemon, "mute.gate")
    assert (job.state, job.exit_code) == ("failed", 2), job
    assert job.message == f"fake gate of {run_dir}: exit 2 (trainer exited with code 2)"


def test_gate_requests_are_refused_with_4xx_naming_the_rule_or_path(
    daemon: DaemonProcess, paths: Path, short: Path
) -> None:
    for method in ("POST", "GET"):
        body = b"{}" if method == "POST" else None
        expect(raw_request(daemon.socket, method, "/runs/nope/gate", body), 404, "no run named 'nope'")
        expect(raw_request(daemon.socket, method, "/runs/..%2Fx/gate", body), 400, "is not allowed")
        expect(raw_request(daemon.socket, method, "/runs/../gate", body), 400, "run name '..' is not allowed")
    finished_run(daemon, paths, "strict")
    expect(post(daemon, "/runs/strict/gate", b"{not json"), 400, "invalid gate request")
    expect(post(daemon, "/runs/strict/gate", [1]), 400, "invalid gate request", "Expected `object`")
    expect(post(daemon, "/runs/strict/gate", {"asr": 5}), 400, "invalid gate request", "$.asr")
    expect(post(daemon, "/runs/strict/gate", {"base": "/x"}), 400, "unknown field `base`")
    expect(post(daemon, "/runs/strict/gate", {"checkpoint": 0}), 400, "steps count from 1")
    expect(post(daemon, "/runs/strict/gate", {"asr": "srv/asr"}), 400, "gate.asr 'srv/asr' is a relative path")
    gone = str(short / "srv" / "gone")
    expect(post(daemon, "/runs/strict/gate", {"asr": gone}), 422, f"gate.asr {gone} is not a directory")
    outside = str(paths / "asr-outside")
    expect(post(daemon, "/runs/strict/gate", {"asr": outside}), 422, f"gate.asr {outside} is outside the bind roots")
    expect(post(daemon, "/runs/strict/gate", {"verifier": outside}), 422,
           f"gate.verifier {outside} is outside the bind roots")
    expect(post(daemon, "/runs/strict/gate", {"verifier": gone}), 422, f"gate.verifier {gone} is not a directory")
    expect(post(daemon, "/runs/strict/gate", {"thresholds": str(short / "srv" / "asr")}), 422,
           "gate.thresholds", "is not a file")
    assert not daemon.run_dir("strict.gate").exists()  # nothing was launched

    daemon.client.launch(spec=make_spec(paths, "moving"))
    expect(post(daemon, "/runs/moving/gate", {}), 409, "refused by rule gate-ended-run", "qwen-daemon stop moving")
    daemon.client.stop("moving")
    prep = PrepareSpec(name="prep-g", out=str(paths / "out" / "prep-g"), model=str(paths / "model"),
                       sources=[SourceSpec(kind="upstream_jsonl", path=str(paths / "corpus.jsonl"), role="train")])
    daemon.client.prepare(prep)
    daemon.client.stop("prep-g")
    assert ended(daemon, "prep-g").state == "stopped"
    expect(post(daemon, "/runs/prep-g/gate", {}), 422, "refused by rule gate-training-run", "'prep-g' is a preprocess")
    expect(raw_request(daemon.socket, "GET", "/runs/prep-g/gate"), 422, "only training runs have a gate verdict")
    expect(post(daemon, "/runs", {"kind": "gate"}), 400, "POST /runs/{name}/gate")


def test_one_gate_at_a_time_and_the_run_waits_for_it(daemon: DaemonProcess, paths: Path) -> None:
    run_dir = Path(finished_run(daemon, paths, "held").run_dir)
    gate_fixture(run_dir, exit_code=0, passed=True, hold=True)
    daemon.client.gate("held")
    wait_until(lambda: daemon.client.run("held.gate").run.health == "live", 30, "the gate process")
    expect(post(daemon, "/runs/held/resume", {}), 409, "gate job 'held.gate' is judging run 'held'")
    expect(post(daemon, "/runs/held/gate", {}), 409, "'held.gate'")
    expect(post(daemon, "/runs/held.gate/gate", {}), 422, "'held.gate' is a gate job")
    (run_dir / RELEASE_FILE).write_text("")
    assert ended(daemon, "held.gate").state == "completed"
    assert daemon.client.resume("held").state in ("launching", "running")  # free again
    daemon.client.stop("held")
    ended(daemon, "held")


def test_a_gate_and_a_diagnose_replay_of_one_run_never_run_at_once(daemon: DaemonProcess, paths: Path) -> None:
    run_dir = Path(finished_run(daemon, paths, "pair").run_dir)
    daemon.client.diagnose("pair")
    wait_until(lambda: daemon.client.run("pair.diagnose").run.health == "live", 30, "the replay process")
    expect(post(daemon, "/runs/pair/gate", {}), 409, "refused by rule one-job-per-run",
           "diagnose job 'pair.diagnose' is replaying run 'pair'")
    assert not daemon.run_dir("pair.gate").exists()  # nothing was launched
    (run_dir / "release").write_text("")
    assert ended(daemon, "pair.diagnose").state == "completed"

    gate_fixture(run_dir, exit_code=0, passed=True, hold=True)
    daemon.client.gate("pair")
    wait_until(lambda: daemon.client.run("pair.gate").run.health == "live", 30, "the gate process")
    (run_dir / "release").unlink()  # a replay let through would wait here, not end at once
    expect(post(daemon, "/runs/pair/diagnose", {}), 409, "refused by rule one-job-per-run",
           "gate job 'pair.gate' is judging run 'pair'")
    expect(post(daemon, "/runs/pair.diagnose/resume", {}), 409, "refused by rule one-job-per-run", "'pair.gate'")
    assert daemon.client.run("pair.diagnose").run.state == "completed"  # the old replay was not relaunched
    (run_dir / RELEASE_FILE).write_text("")
    assert ended(daemon, "pair.gate").state == "completed"


def test_the_verdict_route_serves_the_file_or_says_why_not(daemon: DaemonProcess, paths: Path) -> None:
    run_dir = Path(finished_run(daemon, paths, "read").run_dir)
    body = expect(raw_request(daemon.socket, "GET", "/runs/read/gate"), 404,
                  "no gate verdict yet: POST /runs/read/gate")
    assert "qwen-daemon gate read" in body["detail"]
    path = verdict_path(run_dir)
    path.parent.mkdir()
    for corrupt in (b'{"run": "read", "passed": tr', b'{"run": "read"}', b"[]"):
        path.write_bytes(corrupt)
        expect(raw_request(daemon.socket, "GET", "/runs/read/gate"), 422, str(path), "unreadable gate verdict",
               "run the gate again")
    path.unlink()
    path.mkdir()  # not even a file
    expect(raw_request(daemon.socket, "GET", "/runs/read/gate"), 422, "unreadable gate verdict")
    path.rmdir()
    written = make_verdict(run_dir, 40, passed=False, decided_at=1234.5)
    atomic_write_bytes(path, msgspec.json.encode(written))
    code, served = raw_request(daemon.socket, "GET", "/runs/read/gate")
    assert code == 200 and msgspec.convert(served, GateVerdict) == written
    assert daemon.client.verdict("read") == written
    assert [j["role"] for j in served["judges"]] == ["speaker_verifier", "speaker_encoder"]  # as the gate wrote them
    assert [r["speaker"] for r in served["speakers"]] == ["fleurs:1001", "fleurs:1002"]
    # a verdict from before judges and per-speaker rows were recorded is served, not refused
    before = (Path(__file__).parent / "gate_verdict_before_judges.json").read_bytes()
    atomic_write_bytes(path, before)
    old = daemon.client.verdict("read")
    assert old == msgspec.json.decode(before, type=GateVerdict) and old.judges == [] and old.speakers == []


def cli(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "qwen_daemon", *args, "--socket", str(daemon.socket)]
    return subprocess.run(command, capture_output=True, text=True, env=python_env(), timeout=60, check=False)


def test_cli_gate_and_verdict(daemon: DaemonProcess, paths: Path, short: Path) -> None:
    run_dir = Path(finished_run(daemon, paths, "cli-g").run_dir)
    missing = cli(daemon, "verdict", "cli-g")
    assert missing.returncode == 1 and "no gate verdict yet: POST /runs/cli-g/gate" in missing.stderr
    gate_fixture(run_dir, exit_code=6, passed=False)
    started = cli(daemon, "gate", "cli-g", "--checkpoint", "7", "--asr", str(short / "srv" / "asr"),
                  "--verifier", str(short / "srv" / "verifier"), "--json")
    assert started.returncode == 0, started.stderr
    assert msgspec.json.decode(started.stdout, type=RunView).name == "cli-g.gate"
    assert ended(daemon, "cli-g.gate").state == "completed"
    assert call_of(run_dir)["argv"][-2:] == ["--verifier", str(short / "srv" / "verifier")]
    shown = cli(daemon, "verdict", "cli-g")
    assert shown.returncode == 0, shown.stderr
    assert "run cli-g: gate NOT PASSED (checkpoint step 7" in shown.stdout
    row = next(line for line in shown.stdout.splitlines() if line.startswith("intelligibility"))
    assert "FAIL" in row and "0.3" in row and "no ASR model given" in row
    assert any(line.startswith("provenance") and " pass " in line for line in shown.stdout.splitlines())
    as_json = msgspec.json.decode(cli(daemon, "verdict", "cli-g", "--json").stdout, type=GateVerdict)
    assert as_json == daemon.client.verdict("cli-g")
    refused = cli(daemon, "gate", "cli-g", "--asr", str(paths / "asr-outside"))
    assert refused.returncode == 1 and "outside the bind roots" in refused.stderr


def test_the_daemons_gate_defaults_fill_a_request_that_names_no_paths(
    short: Path, paths: Path, module_dir: MakeDir
) -> None:
    """`serve --gate-asr/--gate-verifier/--gate-thresholds`: what the dashboard's "run gate" (which sends no
    paths) gets."""
    asr, thresholds, verifier = short / "srv" / "asr", short / "srv" / "thresholds.json", short / "srv" / "verifier"
    proc = DaemonProcess(module_dir("state2"), short / "d.sock", gate_wrapper(short),
                         "--sample-period", "0.2", "--stop-timeout", "5", "--journal-socket", "",
                         "--gate-asr", str(asr), "--gate-thresholds", str(thresholds),
                         "--gate-verifier", str(verifier)).start()
    try:
        run_dir = Path(finished_run(proc, paths, "defaulted").run_dir)
        gate_fixture(run_dir, exit_code=6, passed=False)
        proc.client.gate("defaulted")
        ended(proc, "defaulted.gate")
        assert call_of(run_dir)["argv"] == ["gate", str(run_dir), "--asr", str(asr), "--verifier", str(verifier),
                                            "--thresholds", str(thresholds)]
        other = paths / "asr-outside"
        proc.client.gate("defaulted", asr=str(other))  # a request's own path wins over the default
        ended(proc, "defaulted.gate")
        assert call_of(run_dir)["argv"] == ["gate", str(run_dir), "--asr", str(other), "--verifier", str(verifier),
                                            "--thresholds", str(thresholds)]
    finally:
        proc.stop()


@pytest.mark.parametrize(("flag", "value", "fragment"), [
    ("--gate-asr", "relative/asr", "relative/asr is not a directory"),  # resolved against serve's cwd first
    ("--gate-asr", "/nonexistent/asr", "is not a directory (an ASR model)"),
    ("--gate-thresholds", "/nonexistent/t.json", "is not a file (gate thresholds JSON)"),
])
def test_a_bad_gate_default_stops_serve_with_a_message_naming_the_flag(
    tmp_path: Path, flag: str, value: str, fragment: str
) -> None:
    sock = short_tmp_dir()
    try:
        out = subprocess.run([sys.executable, "-m", "qwen_daemon", "serve", "--state-dir", str(tmp_path / "s"),
                              "--socket", str(sock / "x.sock"), "--journal-socket", "", flag, value],
                             env=python_env(), capture_output=True, text=True, timeout=60)
    finally:
        remove_tree(sock)
    assert out.returncode == 2, out
    assert flag in out.stderr and fragment in out.stderr, out.stderr
    assert not (tmp_path / "s").exists()  # refused before anything was created
