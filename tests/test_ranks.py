"""`train.processes = 2`: the trainer supervises its own ranks (CPU processes over gloo here).

The supervisor exists because `accelerate launch` turns every rank's exit code
into 1; these tests hold it to what the daemon needs: the same training as
under `accelerate launch`, the trainer's own exit codes, a graceful stop that
every rank agrees on (whichever rank got the signal), and a dead rank that
takes the run down instead of leaving the others waiting in a collective.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from qwen_train import exitcodes
from qwen_train.spec import Posture
from qwen_train.status import read_status
from qwen_train.train.checkpointing.checkpoint import list_checkpoints, load_state, read_meta
from tests.conftest import MakeDir, python_env
from tests.trainer_harness import losses, step_of, wait_until, write_spec

POSTURE = Posture(checkpoint_every=4, eval_every=100, keep_last=3)
STEPS = 10
CPU = {"CUDA_VISIBLE_DEVICES": ""}


@pytest.fixture(scope="module")
def spec(demo_root: Path, module_dir: MakeDir) -> Path:
    return write_spec(demo_root, module_dir("specs"), "ranks", STEPS, POSTURE, processes=2, device="cpu")


def start(spec: Path, run_dir: Path, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "qwen_train", "run", str(spec), "--run-dir", str(run_dir), "--nonce", "rk", *extra]
    return subprocess.Popen(cmd, env={**python_env(), **CPU}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def finish(proc: subprocess.Popen[bytes], timeout: float = 300) -> tuple[int, str]:
    """The run's exit code and output; a run still going at `timeout` is killed whole (ranks too) and fails."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        tail = out.decode(errors='replace')[-3000:]
        raise AssertionError(f"still running after {timeout} s (hung ranks?):\n{tail}") from None
    return proc.returncode, out.decode(errors="replace")


def rank_pid(supervisor: int, rank: int) -> int:
    for child in psutil.Process(supervisor).children():
        if child.environ().get("RANK") == str(rank):
            return child.pid
    raise AssertionError(f"no rank {rank} under {supervisor}")


@pytest.fixture(scope="module")
def reference(spec: Path, module_dir: MakeDir) -> list[tuple[int, float, float, float]]:
    """The same spec under `accelerate launch` (the trainer then sees a rank environment and trains as a rank)."""
    run_dir = module_dir("accelerate") / "run"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
           "-m", "qwen_train", "run", str(spec), "--run-dir", str(run_dir), "--nonce", "ref"]
    out = subprocess.run(cmd, env={**python_env(), **CPU}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return losses(run_dir)


def test_supervised_ranks_train_as_accelerate_launch_does(spec: Path, reference: list, tmp_path: Path) -> None:
    code, out = finish(start(spec, tmp_path / "run"))
    assert code == exitcodes.COMPLETED, out[-3000:]
    assert losses(tmp_path / "run") == reference and [r[0] for r in reference] == list(range(1, STEPS + 1))
    newest = list_checkpoints(tmp_path / "run")[-1]
    assert read_meta(newest).cursor.world_size == 2
    assert len(load_state(newest)["rng"]) == 2  # each rank's RNG was gathered


def test_sigterm_to_the_supervisor_stops_every_rank_after_one_step_and_resumes_exactly(
    spec: Path, reference: list, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    proc = start(spec, run_dir)
    wait_until(lambda: step_of(run_dir) >= 2, 240, "step 2")
    proc.send_signal(signal.SIGTERM)
    code, out = finish(proc)
    assert code == exitcodes.STOPPED, out[-3000:]  # accelerate launch would have said 1
    status = read_status(run_dir / "status.json")
    assert status.state == "stopped" and 2 <= status.step < STEPS, status
    assert list_checkpoints(run_dir)[-1].name == f"step-{status.step:08d}"  # every rank reached the same step
    code, out = finish(start(spec, run_dir, "--resume"))
    assert code == exitcodes.COMPLETED, out[-3000:]
    assert losses(run_dir) == reference


def test_a_signal_to_one_rank_alone_stops_them_all_at_the_same_step(spec: Path, tmp_path: Path) -> None:
    """A rank that stopped alone would wait forever in its checkpoint's gather: the stop is agreed in the step."""
    run_dir = tmp_path / "run"
    proc = start(spec, run_dir)
    wait_until(lambda: step_of(run_dir) >= 1, 240, "step 1")
    os.kill(rank_pid(proc.pid, 1), signal.SIGTERM)
    code, out = finish(proc, timeout=240)
    assert code == exitcodes.STOPPED, out[-3000:]
    status = read_status(run_dir / "status.json")
    assert status.state == "stopped" and "another rank" in (status.message or ""), status
    assert list_checkpoints(run_dir)[-1].name == f"step-{status.step:08d}"


def test_a_rank_that_dies_takes_the_run_down_with_its_reason(spec: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start(spec, run_dir)
    wait_until(lambda: step_of(run_dir) >= 1, 240, "step 1")
    survivor = rank_pid(proc.pid, 0)
    os.kill(rank_pid(proc.pid, 1), signal.SIGKILL)
    started = time.monotonic()
    code, out = finish(proc, timeout=120)  # not gloo's 30-minute collective timeout
    assert code == exitcodes.FAILED, out[-3000:]
    assert "rank 1 was killed by SIGKILL" in out
    assert time.monotonic() - started < 90
    assert not psutil.pid_exists(survivor)  # rank 0 was stopped (or killed) and reaped, not left waiting


def test_more_processes_than_gpus_is_refused_before_anything_starts(demo_root: Path, tmp_path: Path) -> None:
    spec = write_spec(demo_root, tmp_path, "gpus", 2, POSTURE, processes=2, device="cuda")
    code, out = finish(start(spec, tmp_path / "run"))
    assert code == exitcodes.USAGE, out[-3000:]
    assert "train.processes is 2 but this machine shows 0 GPU(s)" in out
    assert read_status(tmp_path / "run" / "status.json").state == "failed"


def test_a_stop_before_the_ranks_can_handle_it_ends_as_a_stop_not_a_failure(spec: Path, tmp_path: Path) -> None:
    """SIGTERM while the ranks still import torch: they die of it; the supervisor ends by the same signal,
    as a lone trainer would (the daemon records `stopped` without a final checkpoint), never 'failed'."""
    proc = start(spec, tmp_path / "run")
    wait_until(lambda: len(psutil.Process(proc.pid).children()) == 2, 60, "both ranks started")
    proc.send_signal(signal.SIGTERM)
    code, out = finish(proc, timeout=120)
    assert code == -signal.SIGTERM, (code, out[-3000:])
    assert "ranks ended differently" not in out and "exited with code 1" not in out
    assert list_checkpoints(tmp_path / "run") == []


def test_ranks_that_all_fail_non_finite_wait_for_rank_0s_diagnosis(demo_root: Path, tmp_path: Path) -> None:
    """Exit 4 is reached by every rank; a rank that ends first must not get rank 0 killed mid-diagnosis."""
    path = write_spec(demo_root, tmp_path, "nf", 6, POSTURE, processes=2, device="cpu")
    raw = json.loads(path.read_text())
    raw["guard"] = {"max_retries": 0}
    path.write_text(json.dumps(raw))
    fault = {"QWEN_TEST_FAULT": json.dumps({"module": "talker.model.layers.1.mlp", "step": 2, "kind": "nan",
                                            "times": 0})}
    cmd = [sys.executable, "-m", "qwen_train", "run", str(path), "--run-dir", str(tmp_path / "run"), "--nonce", "nf"]
    proc = subprocess.Popen(cmd, env={**python_env(), **CPU, **fault}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    code, out = finish(proc)
    assert code == exitcodes.FAILED_NON_FINITE, out[-3000:]
    assert (tmp_path / "run" / "diagnosis.json").is_file(), out[-3000:]
    assert read_status(tmp_path / "run" / "status.json").state == "failed_non_finite"
    assert "killing them" not in out


def test_ranks_die_with_their_supervisor(spec: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = start(spec, run_dir)
    wait_until(lambda: step_of(run_dir) >= 1, 240, "step 1")
    ranks = [rank_pid(proc.pid, r) for r in (0, 1)]
    proc.kill()  # the supervisor alone, as the OOM killer would
    proc.wait(timeout=30)
    wait_until(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                               for p in ranks), 30, "the ranks to die with their supervisor")


def test_a_replay_of_a_two_process_run_in_one_process_is_refused_not_wrong(spec: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    code, out = finish(start(spec, run_dir))
    assert code == exitcodes.COMPLETED, out[-3000:]
    replay = subprocess.run([sys.executable, "-m", "qwen_train", "diagnose", str(run_dir), "--step", "6"],
                            env={**python_env(), **CPU}, capture_output=True, text=True, timeout=300)
    assert replay.returncode != 0 and "was written by a 2-process run and this replay runs 1" in replay.stderr
    assert not (run_dir / "diagnosis.json").exists()
