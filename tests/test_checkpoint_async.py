"""Background checkpoints: a kill during the write keeps the previous checkpoint, and resume stays exact.

The trainer runs on the CPU with the GPU's background writer switched on
(`QWEN_TRAIN_PERF`); the test pause holds the writer thread just before its
rename, while the training thread goes on past the checkpoint's step.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from qwen_train import exitcodes
from qwen_train.spec import Posture
from qwen_train.train.checkpointing.background import BackgroundCheckpointer
from qwen_train.train.checkpointing.checkpoint import list_checkpoints, load_state, verify_checkpoint
from qwen_train.train.data.cursor import Cursor
from tests.conftest import MakeDir
from tests.trainer_harness import finish, kill, losses, run, start, step_of, wait_until, write_spec

STEPS = 10
POSTURE = Posture(checkpoint_every=4, eval_every=5, keep_last=3)
ASYNC = {"QWEN_TRAIN_PERF": json.dumps({"async_checkpoint": True})}
META = {"cursor": Cursor(0, 0, 1, 2, 1, 10), "spec": "{}", "bundle_fingerprint": "f"}


@pytest.fixture(scope="module")
def reference(demo_root: Path, module_dir: MakeDir) -> list[tuple[int, float, float, float]]:
    """The same run with synchronous checkpoints."""
    where = module_dir("ref")
    spec = write_spec(demo_root, where, "ref", STEPS, POSTURE)
    code, out = run(spec, where / "run")
    assert code == exitcodes.COMPLETED, out[-2000:]
    return losses(where / "run")


def test_kill_during_background_write_keeps_the_previous_checkpoint(demo_root: Path, tmp_path: Path,
                                                                    reference) -> None:
    spec = write_spec(demo_root, tmp_path, "bg", STEPS, POSTURE)
    run_dir = tmp_path / "run"
    proc = start(spec, run_dir, env={**ASYNC, "QWEN_TEST_PAUSE": "checkpoint-before-rename@8:120"})
    ckpt_root = run_dir / "checkpoints"
    wait_until(lambda: (ckpt_root / ".tmp-step-00000008").is_dir(), 180, "the background write of step 8")
    wait_until(lambda: step_of(run_dir) >= 9, 120, "training past step 8 while the write is held")
    kill(proc)
    assert [c.name for c in list_checkpoints(run_dir)] == ["step-00000004"]
    assert verify_checkpoint(ckpt_root / "step-00000004").step == 4
    code, out = run(spec, run_dir, "--resume")
    assert code == exitcodes.COMPLETED, out[-2000:]
    assert not any(p.name.startswith(".tmp-") for p in ckpt_root.iterdir())
    assert losses(run_dir) == reference


def test_background_run_matches_synchronous_and_its_checkpoints_verify(demo_root: Path, tmp_path: Path,
                                                                       reference) -> None:
    spec = write_spec(demo_root, tmp_path, "bg-full", STEPS, POSTURE)
    run_dir = tmp_path / "run"
    code, out = finish(start(spec, run_dir, env=ASYNC))
    assert code == exitcodes.COMPLETED, out[-2000:]
    assert losses(run_dir) == reference
    names = [c.name for c in list_checkpoints(run_dir)]
    assert names == ["step-00000004", "step-00000008", "step-00000010"]
    for ckpt in list_checkpoints(run_dir):
        verify_checkpoint(ckpt)


def test_snapshot_is_a_copy_taken_at_submit(tmp_path: Path) -> None:
    """What is written is the state at submit time, even if training changes it before the write ends."""
    weight = torch.arange(6, dtype=torch.float32)
    tied = {"a": weight, "b": weight}
    writer = BackgroundCheckpointer(pin=False)
    writer.submit(tmp_path, 1, {"model": tied, "step": 1}, META)
    weight.add_(100)  # the training thread moves on
    path = writer.wait()
    assert path is not None and path.name == "step-00000001"
    state = load_state(path)
    assert torch.equal(state["model"]["a"], torch.arange(6, dtype=torch.float32))
    assert state["model"]["a"].data_ptr() == state["model"]["b"].data_ptr()  # tied stays tied
    verify_checkpoint(path)


def test_reserve_then_submit_reuses_buffers_and_refuses_overlap(tmp_path: Path) -> None:
    state = {"model": {"w": torch.ones(4, 4)}, "optimizer": {"state": {0: {"exp_avg": torch.zeros(4, 4)}}}}
    writer = BackgroundCheckpointer(pin=False)
    writer.reserve(state)
    writer.wait()
    assert writer.reserved and writer.host_bytes() == 2 * 16 * 4
    buffer = writer._buffers[("model", "w")]
    writer.submit(tmp_path, 2, {**state, "step": 2}, META)
    with pytest.raises(RuntimeError, match="in flight"):
        writer.snapshot(state)
    assert writer.wait() is not None
    assert writer._buffers[("model", "w")] is buffer
