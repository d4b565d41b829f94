"""End to end: the real daemon trains the tiny model, then runs the real `qwen-train gate` on the run.

No ASR model is given, so the gate cannot measure intelligibility and must
fail it (the gate fails closed): the job ends `completed` with exit 6, the
verdict served back lists every criterion, and what governance reads of it
(`passed`) is false, so it cannot unblock a recovery surface. The resource
evidence the gate judged is the summary the daemon wrote into the run dir.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from qwen_daemon.governance.surfaces import read_gate
from qwen_daemon.protocol import ResourceSummary, RunView
from qwen_train.exitcodes import GATE_FAILED
from qwen_train.gate.verdict import CRITERIA, verdict_path
from qwen_train.spec import Posture, RunSpec, TrainConfig
from tests.conftest import REPO
from tests.test_daemon_harness import DaemonProcess, raw_request, wait_until

ACTIVE = ("launching", "running", "stopping")


@pytest.fixture
def daemon(short_tmp: Path) -> Iterator[DaemonProcess]:
    proc = DaemonProcess(short_tmp / "state", short_tmp / "d.sock", Path(sys.executable), "--sample-period", "0.5",
                         "--journal-socket", "", env={"PYTHONPATH": str(REPO)}).start()
    yield proc
    for view in proc.client.runs().runs:
        if view.state in ("launching", "running"):
            proc.client.stop(view.name)
    proc.stop()


def ended(daemon: DaemonProcess, name: str, timeout: float) -> RunView:
    def over() -> RunView | None:
        view = daemon.client.run(name).run
        return view if view.state not in ACTIVE else None

    return wait_until(over, timeout, f"{name} to end")


def test_a_real_gate_on_a_finished_tiny_run_fails_intelligibility_without_an_asr(
    demo_root: Path, daemon: DaemonProcess, short_tmp: Path
) -> None:
    spec = RunSpec(name="gated", lane="language-expansion", model=str(demo_root / "model"),
                   bundle=str(demo_root / "bundle"), posture=Posture(checkpoint_every=3, eval_every=3, keep_last=3),
                   train=TrainConfig(batch_size=2, lr=1e-3, max_steps=6, eval_max_rows=4))
    daemon.client.launch(spec=spec)
    run = ended(daemon, "gated", 300)
    assert run.state == "completed", (run, (Path(run.run_dir) / "trainer.log").read_text()[-3000:])
    run_dir = Path(run.run_dir)
    # Written by the monitor's end hook just after the end is recorded (the API may show the end first).
    wait_until(lambda: (run_dir / "resources.json").exists(), 30, "the run's resource evidence")
    evidence = msgspec.json.decode((run_dir / "resources.json").read_bytes(), type=ResourceSummary)
    assert evidence.samples > 0

    bounds = short_tmp / "bounds.json"  # the default thresholds, on a few rows: a tiny model is slow to clone
    bounds.write_text(json.dumps({"eval_max_rows": 2, "clone_max_rows": 2, "max_new_tokens": 24}))
    job = daemon.client.gate("gated", thresholds=str(bounds))
    assert (job.name, job.kind, job.parent) == ("gated.gate", "gate", "gated")
    done = ended(daemon, "gated.gate", 420)
    log = (Path(done.run_dir) / "trainer.log").read_text()
    assert (done.state, done.exit_code) == ("completed", GATE_FAILED), (done, log[-3000:])
    assert f"gate {run_dir} --thresholds {bounds}" in log  # the command line the daemon gave it

    verdict = daemon.client.verdict("gated")
    assert verdict.passed is False and [c.name for c in verdict.criteria] == list(CRITERIA)
    criteria = {c.name: c for c in verdict.criteria}
    assert criteria["intelligibility"].passed is False
    assert "not measured: no ASR model given" in criteria["intelligibility"].detail, criteria["intelligibility"]
    assert not criteria["resource_evidence"].detail.startswith("not measured"), criteria["resource_evidence"]
    assert done.message is not None and done.message.startswith("gate did not pass: ")
    assert "intelligibility" in done.message

    path = verdict_path(run_dir)
    assert read_gate(str(path)).passed is False  # as governance reads it
    code, body = raw_request(daemon.socket, "POST", "/surfaces/proof/class",
                             json.dumps({"class": "recovery", "reason": "try", "gate": str(path)}).encode())
    assert code == 403 and "did not pass: it cannot unblock" in body["error"], body
