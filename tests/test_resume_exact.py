"""Exact resume: a run SIGKILLed anywhere and resumed trains the same losses, step for step."""

from __future__ import annotations

from pathlib import Path

import pytest

from qwen_train import exitcodes
from qwen_train.spec import Posture
from qwen_train.train.checkpointing.checkpoint import list_checkpoints, verify_checkpoint
from tests.conftest import MakeDir
from tests.trainer_harness import kill, losses, run, start, step_of, wait_until, write_spec

STEPS = 14
POSTURE = Posture(checkpoint_every=4, eval_every=5, keep_last=3)


@pytest.fixture(scope="module")
def reference(demo_root: Path, module_dir: MakeDir) -> list[tuple[int, float, float, float]]:
    where = module_dir("ref")
    spec = write_spec(demo_root, where, "ref", STEPS, POSTURE)
    code, out = run(spec, where / "run")
    assert code == exitcodes.COMPLETED, out[-2000:]
    series = losses(where / "run")
    assert [s[0] for s in series] == list(range(1, STEPS + 1))
    return series


@pytest.mark.parametrize("kill_at", [2, 6, 11])
def test_sigkill_then_resume_matches_uninterrupted(demo_root: Path, tmp_path: Path, reference, kill_at: int) -> None:
    spec = write_spec(demo_root, tmp_path, "killed", STEPS, POSTURE)
    run_dir = tmp_path / "run"
    proc = start(spec, run_dir)
    wait_until(lambda: step_of(run_dir) >= kill_at, 120, f"step {kill_at}")
    kill(proc)
    code, out = run(spec, run_dir, "--resume")
    assert code == exitcodes.COMPLETED, out[-2000:]
    assert losses(run_dir) == reference


def test_kill_during_checkpoint_write_keeps_the_previous_one(demo_root: Path, tmp_path: Path, reference) -> None:
    spec = write_spec(demo_root, tmp_path, "midsave", STEPS, POSTURE)
    run_dir = tmp_path / "run"
    proc = start(spec, run_dir, env={"QWEN_TEST_PAUSE": "checkpoint-before-rename@8:60"})
    ckpt_root = run_dir / "checkpoints"
    wait_until(lambda: (ckpt_root / ".tmp-step-00000008").is_dir(), 180, "the step-8 checkpoint write")
    kill(proc)
    assert [c.name for c in list_checkpoints(run_dir)] == ["step-00000004"]
    assert verify_checkpoint(ckpt_root / "step-00000004").step == 4
    code, out = run(spec, run_dir, "--resume")
    assert code == exitcodes.COMPLETED, out[-2000:]
    assert not any(p.name.startswith(".tmp-") for p in ckpt_root.iterdir())
    assert losses(run_dir) == reference
