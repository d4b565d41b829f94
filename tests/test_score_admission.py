"""Scoring on a shared card: it waits, queued with the reason, while the card has no room, and scores later.

The daemon reads a recorded R9700 (tests/gpu_trees.py, as test_gpu_sharing.py
does) with a llama.cpp-like tenant. A training run (the fake trainer, planned
as a 12-layer talker) starts with room for its plan; its first durable
checkpoint then asks for scoring, which needs the model and its judges on the
same card. Free memory covers scoring alone but not scoring and what the run's
plan may still take (the fake trainer holds nothing yet), so RUN.score is
queued, saying so, and never started past the plan; once the tenant lets go,
the GPU queue starts it and the checkpoint gets its scores. A `device: cpu`
run's scoring is no GPU matter: it starts at once beside the crowded card.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import msgspec

from qwen_daemon.protocol import score_name
from qwen_daemon.sharing.admission import GIB, RULE_ROOM
from qwen_daemon.sharing.beside import scoring_peak
from qwen_train.scores.record import scored_steps
from qwen_train.spec import ScoresSpec
from tests.gpu_trees import counters
from tests.scores_fake import CALLS_FILE, score_wrapper
from tests.small_fs import small_fs
from tests.test_daemon_harness import DaemonProcess, short_tmp_dir, wait_until
from tests.test_gpu_sharing import ROOMY_MIB, gpu_spec, peak_of, tenant_sizes, tree_with_tenant

ACTIVE = ("launching", "running", "stopping")


def test_scoring_waits_for_room_beside_its_runs_plan_and_scores_once_the_tenant_leaves() -> None:
    root = short_tmp_dir()
    spec = gpu_spec(root, "sizes")
    modest = tenant_sizes(spec)[1]
    free = 32 * GIB - modest
    assert peak_of(spec) < free < peak_of(spec) + scoring_peak(spec, None)  # the case under test
    device = tree_with_tenant(root / "tree", used=modest)
    try:
        with small_fs(ROOMY_MIB) as runs:
            daemon = DaemonProcess(root / "state", root / "d.sock", score_wrapper(root), "--gpu-root",
                                   str(root / "tree"), "--sample-period", "0.5", "--runs-dir", str(runs),
                                   "--journal-socket", "").start()
            try:
                waits_then_scores(daemon, root, runs, device)
            finally:
                for view in daemon.client.runs().runs:
                    if view.state in ("launching", "running", "queued"):
                        daemon.client.stop(view.name)
                wait_until(lambda: all(v.state not in ACTIVE for v in daemon.client.runs().runs), 30, "the ends")
                daemon.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def launch(daemon: DaemonProcess, root: Path, runs: Path, name: str, device: str = "auto") -> Path:
    run_dir = runs / name
    run_dir.mkdir()
    (run_dir / "fixture.json").write_text(json.dumps({"checkpoint_every": 5}))
    spec = msgspec.structs.replace(gpu_spec(root, name, device=device), scores=ScoresSpec(enabled=True))
    assert daemon.client.launch(spec=spec).state in ("launching", "running")
    return run_dir


def waits_then_scores(daemon: DaemonProcess, root: Path, runs: Path, device: Path) -> None:
    client = daemon.client
    run_dir = launch(daemon, root, runs, "g1")
    job = wait_until(lambda: next((r for r in client.runs().runs if r.name == score_name("g1")), None), 30,
                     "g1's scoring to be asked for")
    assert job.state == "queued" and job.health == "waiting", job
    assert "g1.score needs 4.1 GiB" in (job.message or "") and "must stay free for run g1" in (job.message or "")
    assert client.gpu_status().queued == ["g1.score"] and not scored_steps(run_dir)
    assert RULE_ROOM not in (job.message or "")  # the reason, in words; the rule is in the events

    cpu_dir = launch(daemon, root, runs, "c1", device="cpu")  # its scoring loads nothing onto the card
    wait_until(lambda: scored_steps(cpu_dir), 30, "c1's scores")
    assert json.loads((cpu_dir / CALLS_FILE).read_text().splitlines()[0])["argv"][-2:] == ["--device", "cpu"]
    assert client.run("g1.score").run.state == "queued"  # still no room beside g1

    counters(device, busy=2, used=0, total=32 * GIB)  # the tenant let go
    wait_until(lambda: scored_steps(run_dir), 30, "g1's first checkpoint to be scored")
    events = [e.kind for e in client.run("g1.score").events]
    assert events[0] == "queued" and "launch" in events
