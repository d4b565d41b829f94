"""Scoring through a real daemon: the job launched on new checkpoints and at the run's end, the routes, the CLI.

The daemon is a real `qwen-daemon serve` sending to a real journald (in its own
mount namespace, read back with journalctl); its jobs are real processes: the
contract-only fake trainer, which writes durable checkpoint dirs and names the
newest in its status, and for `qwen_train score` the fake scorer
(scores_fake.py), which records its command line and writes real score
records, skipping what exists. Checked: RUN.score starts when the status
reports a new checkpoint of a run whose spec turns scores on (`--checkpoint N --base`, with the gate's
judges), every kept checkpoint left
gets scored once the run ends (`--all-unscored`), a scorer killed mid-way is
relaunched and loses nothing, the scores come back through GET .../scores, the
history, `qwen-daemon scores` and `history`, the run's events and journald, and
bad requests are 4xx naming what is wrong.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from qwen_daemon.protocol import RunScores, RunView
from qwen_train.checkpoint_files import CKPT_DIR, checkpoint_name
from qwen_train.scores.record import SCORES_DIR, scored_steps, step_file
from qwen_train.spec import ScoresSpec
from tests.conftest import MakeDir, python_env
from tests.scores_fake import CALLS_FILE, FIXTURE_FILE, RELEASE_FILE, make_scores, score_wrapper, write_scores
from tests.test_daemon_harness import DaemonProcess, make_spec, raw_request, remove_tree, short_tmp_dir, wait_until
from tests.test_journal_native import JOURNALD, SETUP, read

ACTIVE = ("launching", "running", "stopping")
PENDING = ("queued", *ACTIVE)


@pytest.fixture(scope="module")
def journald() -> Iterator[Path]:
    """A standalone journald in a private mount namespace; its root, as /proc/PID/root."""
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", SETUP,
                             JOURNALD], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = Path(f"/proc/{proc.pid}/root")
    try:
        wait_until(lambda: (root / "run/systemd/journal/socket").exists() or proc.poll() is not None, 10, "journald")
        assert proc.poll() is None, "journald did not start"
        yield root
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def daemon(journald: Path, module_dir: MakeDir) -> Iterator[DaemonProcess]:
    short = short_tmp_dir()
    for judge in ("asr", "verifier"):
        (short / judge).mkdir()
    proc = DaemonProcess(module_dir("state"), short / "s.sock", score_wrapper(short), "--sample-period", "0.5",
                         "--stop-timeout", "5", "--journal-socket", str(journald / "run/systemd/journal/socket"),
                         "--gate-asr", str(short / "asr"), "--gate-verifier", str(short / "verifier"))
    proc.start()
    yield proc
    for view in proc.client.runs().runs:
        if view.state in ("launching", "running"):
            proc.client.stop(view.name)
    wait_until(lambda: all(v.state not in ACTIVE for v in proc.client.runs().runs), 30, "every job to end")
    proc.stop()
    remove_tree(short)


@pytest.fixture(scope="module")
def paths(module_dir: MakeDir) -> Path:
    root = module_dir("inputs")
    (root / "corpus.jsonl").write_text("")
    return root


def settled(daemon: DaemonProcess, name: str, timeout: float = 60.0) -> RunView:
    """The job once it has ended (not queued, not running)."""
    def over() -> RunView | None:
        view = daemon.client.run(name).run
        return view if view.state not in PENDING else None

    return wait_until(over, timeout, f"{name} to end")


def calls(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / CALLS_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def start_run(daemon: DaemonProcess, paths: Path, name: str, fixture: dict[str, Any],
              scorer: dict[str, Any] | None = None, scored: bool = True) -> Path:
    """A fake-trainer run whose spec turns listening scores on (unless not `scored`)."""
    run_dir = daemon.run_dir(name)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "fixture.json").write_text(json.dumps(fixture))
    if scorer is not None:
        (run_dir / FIXTURE_FILE).write_text(json.dumps(scorer))
    spec = msgspec.structs.replace(make_spec(paths, name), scores=ScoresSpec(enabled=scored))
    daemon.client.launch(spec=spec)
    return run_dir


def kept_steps(run_dir: Path) -> list[int]:
    return sorted(int(p.name.removeprefix("step-")) for p in (run_dir / CKPT_DIR).iterdir())


def test_each_new_checkpoint_is_scored_as_the_run_trains_and_the_rest_once_it_ends(
    daemon: DaemonProcess, paths: Path, journald: Path
) -> None:
    # The first launch holds after the base row, so checkpoints 20 and 30 wait for it, then for the run's end.
    run_dir = start_run(daemon, paths, "heard", {"checkpoint_every": 10, "exit_after_s": 7.0, "exit_code": 0},
                        {"hold_after": 1})
    wait_until(lambda: calls(run_dir), 30, "the first scoring launch")
    job = daemon.client.run("heard.score").run
    assert (job.kind, job.parent, job.state) == ("score", "heard", "running")
    assert daemon.client.run("heard").run.scored and not job.scored  # its spec turns scores on
    judges = ["--asr", str(daemon.trainer.parent / "asr"), "--verifier", str(daemon.trainer.parent / "verifier")]
    assert calls(run_dir)[0]["argv"] == ["score", str(run_dir), "--checkpoint", "10", "--base", *judges]
    assert calls(run_dir)[0]["nonce"] == job.nonce  # the nonce travels in the environment only
    wait_until(lambda: (run_dir / SCORES_DIR / "base.json").exists(), 10, "the base row")
    assert settled(daemon, "heard").state == "completed"
    assert daemon.client.run("heard.score").run.state == "running"  # still on step 10: the rest waits
    (run_dir / RELEASE_FILE).write_text("")
    wait_until(lambda: len(calls(run_dir)) == 2, 30, "the scoring of the run's end")
    assert calls(run_dir)[1]["argv"] == ["score", str(run_dir), "--all-unscored", "--base", *judges]
    job = settled(daemon, "heard.score")
    kept = kept_steps(run_dir)
    assert job.state == "completed" and kept[:2] == [10, 20], job
    assert job.message == f"scored steps {', '.join(map(str, kept[1:]))}; best checkpoint: step {kept[-1]}"
    assert sorted(scored_steps(run_dir)) == kept
    time.sleep(2.5)  # a scheduler tick later: nothing more to score, nothing launched
    assert len(calls(run_dir)) == 2

    scores = daemon.client.scores("heard")
    assert [s.step for s in scores.checkpoints] == kept and scores.kept == kept and scores.best == kept[-1]
    assert scores.base is not None and scores.problems == [] and daemon.client.scores("heard.score") == scores
    history = daemon.client.history("heard")
    assert [p.step for p in history.scores] == kept and history.best_score_step == kept[-1]
    assert history.base_scores is not None and history.base_scores.cer == scores.base.cer
    events = [e for e in daemon.client.run("heard").events if e.kind in ("scores", "scoring")]
    assert events[0].message == "heard.score: scoring checkpoint step 10 (and the base model, once)"
    scored = [e.message for e in events if e.kind == "scores"]
    assert any(m.startswith("run heard: the base model scored: CER 0.4500") for m in scored), scored
    assert any(m.startswith(f"run heard: step {kept[-1]} scored (best checkpoint so far): ") for m in scored)
    entries = wait_until(lambda: [e for e in read(journald, "QWEN_RUN_ID=heard") if "QWEN_SCORE_STEP" in e], 10,
                         "score entries in the journal")
    by_step = {e["QWEN_SCORE_STEP"]: e for e in entries}
    assert set(by_step) == {"base", *map(str, kept)}
    assert by_step["10"]["QWEN_SCORE_ASR"] == "/srv/models/kb-whisper-small"
    assert by_step["base"]["QWEN_SCORE_CER"] == "0.45" and by_step[str(kept[-1])]["QWEN_SCORE_BEST"] == "1"


def test_a_scorer_killed_mid_way_is_relaunched_and_loses_nothing(daemon: DaemonProcess, paths: Path) -> None:
    for step in (3, 6, 9):  # kept from an earlier launch: only the run's end asks for them
        (daemon.run_dir("killed") / CKPT_DIR / checkpoint_name(step)).mkdir(parents=True)
    run_dir = start_run(daemon, paths, "killed", {"exit_after_s": 0.5, "exit_code": 0}, {"hold_after": 2})
    assert settled(daemon, "killed").state == "completed"
    wait_until(lambda: len(scored_steps(run_dir)) >= 1, 30, "the first records")  # the base row and step 3
    first = wait_until(lambda: daemon.client.run("killed.score").run.pid, 10, "the scorer's pid")
    before = {step: path.stat().st_mtime_ns for step, path in scored_steps(run_dir).items()}
    os.kill(first, signal.SIGKILL)  # from outside: the daemon did not send it
    wait_until(lambda: len(calls(run_dir)) >= 2, 30, "the relaunch")
    (run_dir / RELEASE_FILE).write_text("")
    job = settled(daemon, "killed.score")
    assert job.state == "completed" and job.pid != first
    assert calls(run_dir)[0]["argv"][:4] == ["score", str(run_dir), "--all-unscored", "--base"]
    assert calls(run_dir)[1]["argv"] == calls(run_dir)[0]["argv"]  # the same task, resumed
    assert sorted(scored_steps(run_dir)) == [3, 6, 9]
    assert {step: scored_steps(run_dir)[step].stat().st_mtime_ns for step in before} == before  # kept as written
    events = [e.kind for e in daemon.client.run("killed.score").events]
    assert "interrupted" in events and events.count("launch") == 2


def test_a_run_resumes_beside_its_scoring_and_its_gate_waits_for_it(daemon: DaemonProcess, paths: Path) -> None:
    run_dir = start_run(daemon, paths, "beside", {"checkpoint_every": 3}, {"hold_after": 1})
    wait_until(lambda: calls(run_dir), 30, "scoring")
    daemon.client.stop("beside")
    assert settled(daemon, "beside").state == "stopped"
    code, body = raw_request(daemon.socket, "POST", "/runs/beside/gate", b"{}")
    assert code == 409 and "refused by rule one-job-per-run" in body["error"], body
    assert "score job 'beside.score' is scoring run 'beside'" in body["error"]
    (run_dir / "fixture.json").write_text(json.dumps({"exit_after_s": 0.5}))
    assert daemon.client.resume("beside").state in ("launching", "running")  # not held back by its scoring
    settled(daemon, "beside")
    (run_dir / RELEASE_FILE).write_text("")
    assert settled(daemon, "beside.score").state == "completed"
    code, body = raw_request(daemon.socket, "POST", "/runs", json.dumps({"kind": "score"}).encode(),
                             {"Content-Type": "application/json"})
    assert code == 400 and "started by the daemon" in body["error"]


def scored_run(daemon: DaemonProcess, paths: Path, name: str) -> Path:
    """A finished run whose dir holds real records for every kept checkpoint (so nothing is left to score)."""
    run_dir = daemon.run_dir(name)
    for step in (500, 1000, 1500):
        (run_dir / CKPT_DIR / checkpoint_name(step)).mkdir(parents=True)
        write_scores(run_dir, make_scores(step))
    write_scores(run_dir, make_scores(None))
    start_run(daemon, paths, name, {"exit_after_s": 0.5, "exit_code": 0})
    assert settled(daemon, name).state == "completed"
    return run_dir


def cli(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "qwen_daemon", *args, "--socket", str(daemon.socket)]
    return subprocess.run(command, capture_output=True, text=True, env=python_env(), timeout=60, check=False)


def test_the_scores_route_and_cli_on_real_records(daemon: DaemonProcess, paths: Path) -> None:
    run_dir = scored_run(daemon, paths, "table")
    code, body = raw_request(daemon.socket, "GET", "/runs/table/scores")
    assert code == 200
    served = msgspec.convert(body, RunScores)
    assert served.best == 1000 and [s.step for s in served.checkpoints] == [500, 1000, 1500]
    assert served.checkpoints[2].limit_share == 0.5 and served.base is not None

    shown = cli(daemon, "scores", "table")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == "run table: 3 checkpoints scored, a base row; best: step 1000"
    header = lines[1].split()
    assert header[:4] == ["STEP", "CER", "WER", "SWEDISH"] and "OVRL" in header and "SILENT" in header
    rows = {line.split()[0]: line for line in lines[2:6]}
    assert rows["base"].split()[1] == "0.4500" and rows["1000"].split()[1:3] == ["*", "0.1000"]
    assert "*" not in rows["500"] and "*" not in rows["1500"]
    assert "CER, WER, SWEDISH by ASR /srv/models/kb-whisper-small" in shown.stdout
    assert "SIMILARITY, SIM/REAL by verifier resemblyzer" in shown.stdout
    assert "OVRL, SIG, BAK by DNSMOS P.835 (speechmos)" in shown.stdout
    assert "verifier resemblyzer on the bundle's real speakers: EER 0.040 over 6 same-speaker" in shown.stdout
    as_json = msgspec.json.decode(cli(daemon, "scores", "table", "--json").stdout, type=RunScores)
    assert as_json == daemon.client.scores("table")
    history = cli(daemon, "history", "table")
    assert history.returncode == 0 and "listening scores (* best by rule: lowest CER" in history.stdout
    assert any(line.split()[:2] == ["1000", "*"] for line in history.stdout.splitlines())

    (run_dir / SCORES_DIR / step_file(1500)).write_bytes(b"{")  # a scorer killed mid-write leaves no such file,
    (run_dir / CKPT_DIR / checkpoint_name(2000)).mkdir()  # but a hand or a bug might
    text = cli(daemon, "scores", "table").stdout
    assert "left out: " in text and "step-00001500.json: malformed scores" in text
    assert "kept checkpoints without scores yet: 1500, 2000" in text


def test_scores_requests_say_what_is_wrong(daemon: DaemonProcess, paths: Path) -> None:
    code, body = raw_request(daemon.socket, "GET", "/runs/nope/scores")
    assert code == 404 and "no run named 'nope'" in body["error"]
    code, body = raw_request(daemon.socket, "GET", "/runs/..%2Fx/scores")
    assert code == 400
    run_dir = start_run(daemon, paths, "plain", {"checkpoint_every": 2, "exit_after_s": 1.0, "exit_code": 0},
                        scored=False)
    settled(daemon, "plain")
    time.sleep(2.5)  # a scheduler tick after its end: a run whose spec does not turn scores on is not scored
    assert kept_steps(run_dir) and not calls(run_dir)
    assert "plain.score" not in [v.name for v in daemon.client.runs().runs]
    assert not daemon.client.run("plain").run.scored
    empty = daemon.client.scores("plain")
    assert (empty.base, empty.checkpoints, empty.best, empty.problems) == (None, [], None, [])
    assert "run plain: 0 checkpoints scored, no base row yet; no best yet" in cli(daemon, "scores", "plain").stdout
    code, body = raw_request(daemon.socket, "POST", "/runs/plain/scores", b"{}")
    assert code == 405
