"""Non-finite guard, diagnosis, bounded retry — with faults injected through the test-only switch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import msgspec

from qwen_train import exitcodes
from qwen_train.spec import Posture
from qwen_train.status import Diagnosis, read_status
from qwen_train.train.checkpointing.checkpoint import list_checkpoints, verify_checkpoint
from tests.conftest import python_env
from tests.trainer_harness import finish, losses, start, write_spec

POSTURE = Posture(checkpoint_every=2, eval_every=100, keep_last=3)
MLP = "talker.model.layers.1.mlp"


def _spec(demo_root: Path, where: Path, name: str, steps: int, guard: dict[str, object], **train: object) -> Path:
    path = write_spec(demo_root, where, name, steps, POSTURE, **train)
    spec = json.loads(path.read_text())
    spec["guard"] = guard
    path.write_text(json.dumps(spec))
    return path


def _fault(**fields: object) -> dict[str, str]:
    return {"QWEN_TEST_FAULT": json.dumps(fields)}


def _diagnosis(run_dir: Path) -> Diagnosis:
    return msgspec.json.decode((run_dir / "diagnosis.json").read_bytes(), type=Diagnosis)


def test_diagnosis_names_the_injected_module_with_forward_backward_and_fp32_verdicts(demo_root: Path,
                                                                                    tmp_path: Path) -> None:
    spec = _spec(demo_root, tmp_path, "nan", 6, {"max_retries": 0})
    run_dir = tmp_path / "run"
    code, out = finish(start(spec, run_dir, env=_fault(module=MLP, step=3, kind="nan", times=0)))
    assert code == exitcodes.FAILED_NON_FINITE, out[-3000:]
    diag = _diagnosis(run_dir)
    assert diag.step == 3 and diag.forward is not None and diag.forward.name == MLP
    assert "talker" in diag.broken_parts and diag.fp32_reproduces is True
    assert diag.backward is not None and diag.backward.name  # the gradient side was replayed too
    status = read_status(run_dir / "status.json")
    assert status.state == "failed_non_finite" and status.diagnosis == diag
    event = status.non_finite_events[-1]
    assert event.step == 3 and event.data["talker"] == "nan" and "position" in event.data
    assert MLP in (run_dir / "diagnosis.txt").read_text()


def test_reduced_precision_fault_is_reported_as_not_reproducing_in_fp32(demo_root: Path, tmp_path: Path) -> None:
    spec = _spec(demo_root, tmp_path, "bf16", 4, {"max_retries": 0}, precision="bf16", device="cpu")
    run_dir = tmp_path / "run"
    code, out = finish(start(spec, run_dir, env=_fault(module=MLP, step=2, kind="inf", times=0,
                                                         precision="reduced")))
    assert code == exitcodes.FAILED_NON_FINITE, out[-3000:]
    diag = _diagnosis(run_dir)
    assert diag.forward is not None and diag.forward.name == MLP and diag.forward.dtype == "bfloat16"
    assert diag.precision == "bf16" and diag.fp32_reproduces is False


def test_injected_once_rolls_back_retries_and_completes(demo_root: Path, tmp_path: Path) -> None:
    spec = _spec(demo_root, tmp_path, "once", 8, {"max_retries": 3})
    run_dir = tmp_path / "run"
    code, out = finish(start(spec, run_dir, env=_fault(module=MLP, step=5, kind="nan", times=1)))
    assert code == exitcodes.COMPLETED, out[-3000:]
    status = read_status(run_dir / "status.json")
    assert status.step == 8 and status.retries == 1
    retries = [e for e in status.events if e.kind == "retry"]
    assert len(retries) == 1 and "rolled back to step-00000004" in retries[0].message
    assert "skipping batch" in retries[0].message
    assert [s[0] for s in losses(run_dir)] == list(range(1, 9))


def test_injected_every_time_fails_after_the_bound_with_checkpoint_untouched(demo_root: Path, tmp_path: Path) -> None:
    spec = _spec(demo_root, tmp_path, "always", 8, {"max_retries": 2})
    run_dir = tmp_path / "run"
    code, out = finish(start(spec, run_dir, env=_fault(module=MLP, step=5, kind="nan", times=0)))
    assert code == exitcodes.FAILED_NON_FINITE, out[-3000:]
    status = read_status(run_dir / "status.json")
    assert status.state == "failed_non_finite" and status.retries == 2
    assert status.diagnosis is not None and status.diagnosis.forward is not None
    assert len([e for e in status.events if e.kind == "retry"]) == 2
    ckpts = list_checkpoints(run_dir)
    assert ckpts[-1].name == "step-00000004" and verify_checkpoint(ckpts[-1]).step == 4
    # The replay command reproduces the diagnosis from the durable checkpoint.
    cmd = [sys.executable, "-m", "qwen_train", "diagnose", str(run_dir), "--step", "5"]
    env = {**python_env(), "QWEN_TEST_FAULT": json.dumps({"module": MLP, "step": 5, "times": 0})}
    replay = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert replay.returncode == 0, replay.stderr[-3000:]
    assert f"first non-finite output at {MLP}" in replay.stdout
    assert read_status(run_dir / "status.json").state == "failed_non_finite"  # status left as it was


def test_absurd_threshold_catches_a_scaled_weight_that_stays_finite(demo_root: Path, tmp_path: Path) -> None:
    fault = _fault(module="talker.codec_head", step=3, kind="scale", target="weight", factor=1e4, times=1)
    plain = _spec(demo_root, tmp_path, "plain", 3, {"max_retries": 0})
    code, out = finish(start(plain, tmp_path / "plain", env=fault))
    assert code == exitcodes.COMPLETED, out[-3000:]
    huge = losses(tmp_path / "plain")[-1]
    assert huge[0] == 3 and 1e3 < huge[2] < float("inf")  # finite, but absurd

    guarded = _spec(demo_root, tmp_path, "guarded", 3, {"max_retries": 0, "max_loss": 1e3})
    code, out = finish(start(guarded, tmp_path / "guarded", env=fault))
    assert code == exitcodes.FAILED_NON_FINITE, out[-3000:]
    status = read_status(tmp_path / "guarded" / "status.json")
    assert "absurd" in status.non_finite_events[-1].message
    assert status.diagnosis is not None and status.diagnosis.forward is None  # nothing went non-finite
