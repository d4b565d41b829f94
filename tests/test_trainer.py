"""The trainer as the daemon runs it: a subprocess with a spec, a run dir and a nonce."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec

from qwen_train import exitcodes
from qwen_train.spec import Posture, RunSpec, TrainConfig, encode_spec
from qwen_train.status import StatusError, read_status
from qwen_train.train.checkpointing.checkpoint import list_checkpoints, verify_checkpoint
from tests.conftest import python_env


def write_spec(demo_root: Path, where: Path, name: str, max_steps: int, posture: Posture) -> Path:
    spec = RunSpec(
        name=name, lane="language-expansion", model=str(demo_root / "model"), bundle=str(demo_root / "bundle"),
        posture=posture, train=TrainConfig(batch_size=2, lr=1e-3, max_steps=max_steps, eval_max_rows=4),
    )
    path = where / f"{name}.json"
    path.write_bytes(encode_spec(spec))
    return path


def start(spec: Path, run_dir: Path, nonce: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "qwen_train", "run", str(spec), "--run-dir", str(run_dir), "--nonce", nonce]
    return subprocess.Popen(cmd, env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_completes_with_posture_heartbeat_eval_and_retention(demo_root: Path, tmp_path: Path) -> None:
    spec = write_spec(demo_root, tmp_path, "short", 12, Posture(checkpoint_every=3, eval_every=4, keep_last=2))
    proc = start(spec, tmp_path / "run", "n0nce")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == exitcodes.COMPLETED, out.decode()[-2000:]
    status = read_status(tmp_path / "run" / "status.json")
    assert (status.state, status.step, status.nonce) == ("completed", 12, "n0nce")
    assert status.losses is not None and status.throughput is not None
    assert status.last_eval is not None and status.last_eval.step == 12
    assert set(status.last_eval.per_split) <= {"held_out_speaker", "held_out_utterance"}
    ckpts = list_checkpoints(tmp_path / "run")
    assert [c.name for c in ckpts] == ["step-00000009", "step-00000012"]
    assert verify_checkpoint(ckpts[-1]).cursor.position >= 0
    report = msgspec.json.decode((tmp_path / "run" / "report.json").read_bytes())
    assert [e["step"] for e in report["evals"]] == [4, 8, 12]
    assert any((tmp_path / "run" / "tensorboard").iterdir())


def _wait_for_step(status_path: Path, step: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if read_status(status_path).step >= step:
                return
        except StatusError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"trainer never reached step {step}")


def test_sigterm_stops_after_a_durable_checkpoint(demo_root: Path, tmp_path: Path) -> None:
    spec = write_spec(demo_root, tmp_path, "long", 100000, Posture(checkpoint_every=1000, eval_every=1000))
    proc = start(spec, tmp_path / "run", "abc")
    _wait_for_step(tmp_path / "run" / "status.json", 3, timeout=120)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == exitcodes.STOPPED, out.decode()[-2000:]
    status = read_status(tmp_path / "run" / "status.json")
    assert status.state == "stopped" and "SIGTERM" in (status.message or "")
    ckpts = list_checkpoints(tmp_path / "run")
    assert len(ckpts) == 1 and verify_checkpoint(ckpts[0]).step == status.step
    assert status.last_checkpoint is not None and status.last_checkpoint.step == status.step
