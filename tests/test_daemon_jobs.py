"""The daemon's other job kinds, for real: a preprocess job and a diagnose replay, with curves.

One daemon (a real `qwen-daemon serve` subprocess) launches the real
`qwen_train prepare` on the demo corpus and the real trainer on the tiny
model. Its environment carries a test fault (QWEN_TEST_FAULT), which the
daemon passes through to every job: training breaks at step 5 and ends
`failed_non_finite`, and the diagnose replay meets the same fault and
names the same module. Preparing ignores the variable.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from qwen_daemon.protocol import ResourceSummary, RunDetail
from qwen_daemon.protocol.client import DaemonError
from qwen_train.bundle.build import corpus_spec
from qwen_train.bundle.fingerprint import verify_bundle
from qwen_train.spec import GuardConfig, Posture, RunSpec, TrainConfig
from qwen_train.status import Diagnosis
from tests.conftest import REPO, MakeDir
from tests.test_daemon_harness import DaemonProcess, remove_tree, short_tmp_dir, wait_until

MLP = "talker.model.layers.1.mlp"
FAULT = {"module": MLP, "step": 5, "kind": "nan", "times": 0}


@pytest.fixture(scope="module")
def daemon(module_dir: MakeDir) -> Iterator[DaemonProcess]:
    short = short_tmp_dir()
    env = {"QWEN_TEST_FAULT": json.dumps(FAULT), "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    proc = DaemonProcess(module_dir("state"), short / "d.sock", Path(sys.executable),
                         "--sample-period", "0.3", "--journal-socket", "", env=env).start()
    try:
        yield proc
    finally:
        for view in proc.client.runs().runs:
            if view.state in ("launching", "running"):
                proc.client.stop(view.name)
        wait_until(lambda: all(v.state not in ("launching", "running", "stopping")
                               for v in proc.client.runs().runs), 60, "every job to end")
        proc.stop()
        remove_tree(short)


def watch(daemon: DaemonProcess, name: str, timeout: float) -> tuple[RunDetail, list[RunDetail]]:
    """Poll a job until it ends; return its final detail and every live detail seen on the way."""
    live: list[RunDetail] = []
    deadline = time.monotonic() + timeout
    while True:
        detail = daemon.client.run(name)
        if detail.run.health == "live":
            live.append(detail)
        if detail.run.state not in ("launching", "running", "stopping"):
            return detail, live
        assert time.monotonic() < deadline, f"{name} still {detail.run.state} after {timeout} s\n{daemon.log()}"
        time.sleep(0.05)


def test_preprocess_job_runs_windows_with_heartbeat_and_resources_and_builds_a_bundle(
    daemon: DaemonProcess, demo_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bundles" / "pilot"
    spec = corpus_spec(demo_root / "corpus" / "corpus.jsonl", demo_root / "model", out, device="cpu")
    spec = msgspec.structs.replace(spec, name="prep-pilot", max_rows=40)  # one bounded window, then the rest
    view = daemon.client.prepare(spec)
    assert (view.kind, view.lane, view.surface, view.runner, view.parent) == (
        "preprocess", "-", "default", "process", None)

    first, live = watch(daemon, "prep-pilot", 120)
    assert first.run.state == "stopped" and first.run.exit_code == 5, first.run
    assert "40/60 rows done" in (first.run.message or ""), first.run.message
    assert first.status is not None and first.status.nonce == view.nonce and first.status.state == "stopped"

    again = daemon.client.resume("prep-pilot")
    assert again.nonce != view.nonce and again.kind == "preprocess"
    final, live2 = watch(daemon, "prep-pilot", 180)
    live += live2
    assert final.run.state == "completed" and final.run.exit_code == 0, (final.run, daemon.log())
    assert live, "never saw a live heartbeat"
    assert all(d.status is not None and d.status.nonce in (view.nonce, again.nonce) for d in live)
    assert {d.status.state for d in live if d.status} <= {"starting", "preparing", "completed", "stopped"}
    assert any(d.run.step is not None and d.run.max_steps == 60 for d in live), [d.run for d in live]

    fingerprint = verify_bundle(out)
    assert final.status is not None and final.status.state == "completed"
    assert f"fingerprint {fingerprint}" in (final.run.message or ""), final.run.message
    def sampled() -> ResourceSummary | None:
        summary = daemon.client.run("prep-pilot").summary
        return summary if summary.samples >= 2 else None

    summary = wait_until(sampled, 10, "resource samples")
    cpu = summary.metrics["cpu_percent"]
    assert cpu.count == summary.samples and cpu.min <= cpu.median <= cpu.max

    log = (Path(final.run.run_dir) / "trainer.log").read_text()
    launches = [line for line in log.splitlines() if line.startswith("=== ")]
    assert len(launches) == 2 and all(" -m qwen_train prepare " in line for line in launches)
    assert not any("--resume" in line for line in launches)  # prepare resumes from its journal
    history = daemon.client.history("prep-pilot")
    assert history.losses == [] and history.evals == []
    with pytest.raises(DaemonError) as caught:
        daemon.client.diagnose("prep-pilot")
    assert caught.value.status == 422 and "only training runs" in str(caught.value)


def fault_spec(demo_root: Path, name: str) -> RunSpec:
    return RunSpec(
        name=name, lane="single-speaker", model=str(demo_root / "model"), bundle=str(demo_root / "bundle"),
        posture=Posture(checkpoint_every=2, eval_every=2, keep_last=3),
        train=TrainConfig(batch_size=2, lr=1e-3, max_steps=8, eval_max_rows=2, device="cpu"),
        guard=GuardConfig(max_retries=0),
    )


def test_non_finite_run_history_diagnosis_and_a_diagnose_replay(daemon: DaemonProcess, demo_root: Path) -> None:
    client = daemon.client
    view = client.launch(spec=fault_spec(demo_root, "tr-fault"))
    assert (view.kind, view.parent) == ("train", None)
    with pytest.raises(DaemonError) as caught:
        client.diagnose("tr-fault")
    assert caught.value.status == 409 and "stop it first" in str(caught.value)

    ended, _ = watch(daemon, "tr-fault", 180)
    assert ended.run.state == "failed_non_finite" and ended.run.exit_code == 4, (ended.run, daemon.log())
    run_dir = Path(ended.run.run_dir)

    history = client.history("tr-fault")
    assert [p.step for p in history.losses] == [1, 2, 3, 4]
    assert all(p.total > 0 and p.talker > 0 for p in history.losses)
    assert [e.step for e in history.evals] == [2, 4] and all(e.per_split for e in history.evals)

    diagnosis = client.diagnosis("tr-fault")
    assert diagnosis.step == 5 and diagnosis.forward is not None and diagnosis.forward.name == MLP
    status_before = (run_dir / "status.json").read_bytes()

    job = client.diagnose("tr-fault")
    assert (job.name, job.kind, job.parent, job.lane) == ("tr-fault.diagnose", "diagnose", "tr-fault", "single-speaker")
    with pytest.raises(DaemonError) as caught:
        client.resume("tr-fault")
    assert caught.value.status == 409 and "tr-fault.diagnose" in str(caught.value)
    with pytest.raises(DaemonError) as caught:
        client.diagnose("tr-fault")
    assert caught.value.status == 409

    done, live = watch(daemon, "tr-fault.diagnose", 180)
    assert done.run.state == "completed" and done.run.exit_code == 0, (done.run, daemon.log())
    assert done.status is None and done.run.health == "ended"
    replayed = client.diagnosis("tr-fault")
    assert replayed.created_at > diagnosis.created_at and replayed.created_at >= job.created_at
    assert replayed.step == 5 and replayed.forward is not None and replayed.forward.name == MLP
    assert done.run.message == replayed.summary.strip().splitlines()[0]
    assert msgspec.json.decode((run_dir / "diagnosis.json").read_bytes(), type=Diagnosis) == replayed
    assert client.diagnosis("tr-fault.diagnose") == replayed  # a diagnose job's diagnosis is its run's
    assert (run_dir / "status.json").read_bytes() == status_before  # the replay left the heartbeat alone
    assert [p.step for p in client.history("tr-fault").losses] == [1, 2, 3, 4]  # nor the curves

    listed = {v.name: v for v in client.runs().runs}
    assert listed["tr-fault.diagnose"].kind == "diagnose" and listed["tr-fault"].kind == "train"
    failing = client.diagnose("tr-fault", step=1)  # no durable checkpoint before step 1
    assert failing.name == "tr-fault.diagnose" and failing.nonce != job.nonce
    failed, _ = watch(daemon, "tr-fault.diagnose", 120)
    assert failed.run.state == "failed" and failed.run.exit_code == 2
    assert "no durable checkpoint before step 1" in (failed.run.message or ""), failed.run.message
    assert client.diagnosis("tr-fault") == replayed  # a failed replay rewrites nothing
