"""End to end: the real daemon trains the tiny model with scores on, and scores it with the real `qwen-train score`.

Nothing is asked of the operator: the daemon starts RUN.score as the run's
status reports durable checkpoints and once the run ends, with the daemon's ASR
judge (the demo's tiny Whisper, as `serve --gate-asr` gives the gate), and
every kept checkpoint ends with a real score record, the base model's row
beside them. What comes back through the API, the history and `qwen-daemon
scores` is what the scorer wrote; the best is marked by the shared rule.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwen_daemon.protocol import RunView
from qwen_train.checkpoint_files import list_checkpoints, step_of
from qwen_train.scores.record import scored_steps
from qwen_train.spec import Posture, RunSpec, ScoresSpec, TrainConfig
from tests.conftest import REPO, python_env
from tests.test_daemon_harness import DaemonProcess, wait_until

PENDING = ("queued", "launching", "running", "stopping")


@pytest.fixture
def daemon(demo_root: Path, short_tmp: Path) -> Iterator[DaemonProcess]:
    proc = DaemonProcess(short_tmp / "state", short_tmp / "d.sock", Path(sys.executable), "--sample-period", "0.5",
                         "--journal-socket", "", "--gate-asr", str(demo_root / "asr"),
                         env={"PYTHONPATH": str(REPO)}).start()
    yield proc
    for view in proc.client.runs().runs:
        if view.state in ("launching", "running", "queued"):
            proc.client.stop(view.name)
    proc.stop()


def settled(daemon: DaemonProcess, name: str, timeout: float) -> RunView:
    def over() -> RunView | None:
        view = daemon.client.run(name).run
        return view if view.state not in PENDING else None

    return wait_until(over, timeout, f"{name} to end")


@pytest.mark.timeout(900)  # a cold demo build (the session's, when this runs first) takes minutes on a busy machine
def test_a_tiny_run_with_scores_on_gets_every_kept_checkpoint_scored_without_asking(
    demo_root: Path, daemon: DaemonProcess
) -> None:
    spec = RunSpec(name="heard", lane="language-expansion", model=str(demo_root / "model"),
                   bundle=str(demo_root / "bundle"), posture=Posture(checkpoint_every=3, eval_every=3, keep_last=3),
                   train=TrainConfig(batch_size=2, lr=1e-3, max_steps=6, eval_max_rows=4, device="cpu"),
                   scores=ScoresSpec(enabled=True, rows=2, max_new_tokens=24, calibration_pairs=8))
    daemon.client.launch(spec=spec)
    run = settled(daemon, "heard", 300)
    run_dir = Path(run.run_dir)
    assert run.state == "completed", (run, (run_dir / "trainer.log").read_text()[-3000:])
    kept = [step_of(c.name) for c in list_checkpoints(run_dir)]

    def scored() -> bool:
        job = daemon.client.run("heard.score").run
        return job.state not in PENDING and sorted(scored_steps(run_dir)) == kept

    wait_until(scored, 600, "every kept checkpoint to be scored")
    job = daemon.client.run("heard.score").run
    log = (Path(job.run_dir) / "trainer.log").read_text()
    assert job.state == "completed", (job, log[-3000:])
    assert f"score {run_dir}" in log and f"--asr {demo_root / 'asr'}" in log and "--device cpu" in log

    scores = daemon.client.scores("heard")
    assert [s.step for s in scores.checkpoints] == kept and scores.base is not None and scores.problems == []
    assert scores.best in kept and all(s.rows == 2 and s.asr for s in scores.checkpoints)
    history = daemon.client.history("heard")
    assert [p.step for p in history.scores] == kept and history.best_score_step == scores.best
    shown = subprocess.run([sys.executable, "-m", "qwen_daemon", "scores", "heard", "--socket", str(daemon.socket)],
                           capture_output=True, text=True, env=python_env(), timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr
    assert any(line.split()[:2] == [str(scores.best), "*"] for line in shown.stdout.splitlines()), shown.stdout
    assert f"CER, WER, SWEDISH by ASR {demo_root / 'asr'}" in shown.stdout and "DNSMOS P.835" in shown.stdout
    assert any(e.kind == "scores" for e in daemon.client.run("heard").events)
