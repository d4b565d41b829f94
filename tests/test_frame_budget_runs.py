"""The real trainer with `train.frame_budget`: exact resume, fail-closed settings, a too-wide row, two processes.

As tests/test_resume_exact.py does for a fixed batch size: a run SIGKILLed
mid-way and resumed writes the same losses as one never interrupted, bit for
bit on CPU; a resume with another budget is refused and changes nothing; a
row the budget cannot hold stops the start with its name; and two processes
each draw their share of every global batch, through a kill and a resume.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from qwen_train import exitcodes
from qwen_train.spec import Posture
from qwen_train.status import read_status
from qwen_train.train.checkpointing.checkpoint import list_checkpoints, load_state, read_meta
from qwen_train.train.data import budget
from tests.conftest import MakeDir, python_env
from tests.trainer_harness import kill, losses, run, start, step_of, tree_digest, wait_until, write_spec

STEPS = 10
POSTURE = Posture(checkpoint_every=4, eval_every=5, keep_last=3)
# The demo rows are 45-75 positions (language tag included): 2 of the longest fit, 4 of the shortest.
BUDGET = 200


@pytest.fixture(scope="module")
def reference(demo_root: Path, module_dir: MakeDir) -> Path:
    where = module_dir("budget-ref")
    spec = write_spec(demo_root, where, "ref", STEPS, POSTURE, frame_budget=BUDGET)
    code, out = run(spec, where / "run")
    assert code == exitcodes.COMPLETED, out[-2000:]
    assert [s[0] for s in losses(where / "run")] == list(range(1, STEPS + 1))
    return where / "run"


def test_the_checkpoint_records_the_budget_plan(reference: Path) -> None:
    cursor = read_meta(list_checkpoints(reference)[-1]).cursor
    assert (cursor.frame_budget, cursor.batch_size, cursor.world_size) == (BUDGET, 0, 1)
    assert cursor.plan.startswith(f"{budget.RULE}:") and cursor.global_batches == cursor.batches_per_epoch > 0
    status = read_status(reference / "status.json")
    assert status.throughput is not None and status.throughput.frames_per_s > 0


def test_sigkill_then_resume_matches_uninterrupted(demo_root: Path, tmp_path: Path, reference: Path) -> None:
    spec = write_spec(demo_root, tmp_path, "killed", STEPS, POSTURE, frame_budget=BUDGET)
    run_dir = tmp_path / "run"
    proc = start(spec, run_dir)
    wait_until(lambda: step_of(run_dir) >= 6, 180, "step 6")
    kill(proc)
    code, out = run(spec, run_dir, "--resume")
    assert code == exitcodes.COMPLETED, out[-2000:]
    assert losses(run_dir) == losses(reference)


@pytest.mark.parametrize(("train", "expected"), [
    ({"frame_budget": 300}, f"frame_budget changed from {BUDGET} to 300"),
    ({}, f"frame_budget changed from {BUDGET} to 0"),  # back to batch_size rows
])
def test_a_changed_budget_is_refused_and_changes_nothing(demo_root: Path, reference: Path, tmp_path: Path,
                                                         train: dict[str, int], expected: str) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    spec = write_spec(demo_root, tmp_path, "ref", STEPS + 4, POSTURE, **train)
    before = tree_digest(run_dir)
    code, out = run(spec, run_dir, "--resume")
    assert code == exitcodes.CURSOR_REJECTED, out[-2000:]
    assert expected in out
    assert read_status(run_dir / "status.json").state == "cursor_rejected"
    assert tree_digest(run_dir) == before


def test_a_row_wider_than_the_budget_stops_the_start_naming_it(demo_root: Path, tmp_path: Path) -> None:
    spec = write_spec(demo_root, tmp_path, "narrow", STEPS, POSTURE, frame_budget=60)
    code, out = run(spec, tmp_path / "run")
    assert code == exitcodes.USAGE, out[-2000:]
    assert "train.frame_budget 60 is smaller than" in out and "Traceback" not in out
    status = read_status(tmp_path / "run" / "status.json")
    assert status.state == "failed" and "train.frame_budget 60" in (status.message or "")
    assert "positions," in (status.message or "") and "row " in (status.message or "")
    assert list_checkpoints(tmp_path / "run") == [] and not (tmp_path / "run" / "losses.jsonl").exists()


def _ranks(spec: Path, run_dir: Path, *extra: str, pause: str = "") -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "qwen_train", "run", str(spec), "--run-dir", str(run_dir), "--nonce", "fb", *extra]
    env = {**python_env(), "CUDA_VISIBLE_DEVICES": "", "QWEN_TEST_PAUSE": pause}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def _finish(proc: subprocess.Popen[bytes]) -> None:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == exitcodes.COMPLETED, out.decode(errors="replace")[-3000:]


def test_two_processes_draw_their_shares_and_resume_exactly(demo_root: Path, tmp_path: Path) -> None:
    steps = 8
    spec = write_spec(demo_root, tmp_path, "ranks", steps, POSTURE, frame_budget=BUDGET, processes=2, device="cpu")
    _finish(_ranks(spec, tmp_path / "ref"))
    reference = losses(tmp_path / "ref")
    assert [r[0] for r in reference] == list(range(1, steps + 1))
    newest = list_checkpoints(tmp_path / "ref")[-1]
    cursor = read_meta(newest).cursor
    assert (cursor.world_size, cursor.frame_budget) == (2, BUDGET)
    assert len(load_state(newest)["rng"]) == 2

    run_dir = tmp_path / "killed"
    proc = _ranks(spec, run_dir, pause="checkpoint-before-prune@4:120")  # held right after step 4 is durable
    wait_until(lambda: any(c.name == "step-00000004" for c in list_checkpoints(run_dir)), 300, "step-4 checkpoint")
    ranks = [child.pid for child in psutil.Process(proc.pid).children(recursive=True)]
    os.killpg(proc.pid, signal.SIGKILL)  # the supervisor and its ranks, as a machine's crash would
    proc.wait(timeout=60)
    wait_until(lambda: not any(_alive(pid) for pid in ranks), 60, "the ranks to die")
    assert [c.name for c in list_checkpoints(run_dir)] == ["step-00000004"]
    _finish(_ranks(spec, run_dir, "--resume"))
    assert losses(run_dir) == reference


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
