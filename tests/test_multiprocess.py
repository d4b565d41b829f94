"""The same trainer under `accelerate launch` with two CPU processes (gloo)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from qwen_train import exitcodes
from qwen_train.spec import Posture
from qwen_train.train.checkpointing.checkpoint import list_checkpoints, load_state, verify_checkpoint
from tests.conftest import python_env
from tests.trainer_harness import losses, wait_until, write_spec

POSTURE = Posture(checkpoint_every=4, eval_every=100, keep_last=3)


def launch(spec: Path, run_dir: Path, *extra: str, pause: str = "") -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
           "-m", "qwen_train", "run", str(spec), "--run-dir", str(run_dir), "--nonce", "mp", *extra]
    env = {**python_env(), "CUDA_VISIBLE_DEVICES": "", "QWEN_TEST_PAUSE": pause}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def kill_every_rank(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the launcher and every process under it: torch elastic starts each rank in a session of its own,
    so the launcher's process group is not all of them (a paused rank left alive still holds the run dir)."""
    tree = [proc.pid, *(child.pid for child in psutil.Process(proc.pid).children(recursive=True))]
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=30)
    wait_until(lambda: not any(_running(pid) for pid in tree[1:]), 30, "every rank to die")


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def finish(proc: subprocess.Popen[bytes]) -> str:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == exitcodes.COMPLETED, out.decode(errors="replace")[-3000:]
    return out.decode(errors="replace")


def test_two_processes_shard_the_cursor_checkpoint_and_resume_exactly(demo_root: Path, tmp_path: Path) -> None:
    spec = write_spec(demo_root, tmp_path, "mp", 8, POSTURE)
    finish(launch(spec, tmp_path / "ref"))
    reference = losses(tmp_path / "ref")
    assert [r[0] for r in reference] == list(range(1, 9))
    meta = verify_checkpoint(list_checkpoints(tmp_path / "ref")[-1])
    assert meta.cursor.world_size == 2 and meta.cursor.position == 8  # 8 global batches of 2 x 2 rows
    assert len(load_state(list_checkpoints(tmp_path / "ref")[-1])["rng"]) == 2  # every rank's RNG

    run_dir = tmp_path / "killed"
    proc = launch(spec, run_dir, pause="checkpoint-before-prune@4:60")  # hold right after step 4 is durable
    wait_until(lambda: any(c.name == "step-00000004" for c in list_checkpoints(run_dir)), 180, "step-4 checkpoint")
    kill_every_rank(proc)
    assert [c.name for c in list_checkpoints(run_dir)] == ["step-00000004"]
    finish(launch(spec, run_dir, "--resume"))
    assert losses(run_dir) == reference
