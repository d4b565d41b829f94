"""Helpers for tests that run the real trainer as a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from qwen_train.run_lock import LOCK_FILE
from qwen_train.spec import Posture, RunSpec, TrainConfig, encode_spec
from qwen_train.status import StatusError, read_status
from tests.conftest import python_env


def write_spec(demo_root: Path, where: Path, name: str, max_steps: int, posture: Posture, **train: object) -> Path:
    config = {"batch_size": 2, "lr": 1e-3, "max_steps": max_steps, "eval_max_rows": 4, "deterministic": True,
              **train}
    spec = RunSpec(
        name=name, lane="language-expansion", model=str(demo_root / "model"), bundle=str(demo_root / "bundle"),
        posture=posture, train=TrainConfig(**config),  # type: ignore[arg-type]
    )
    path = where / f"{name}.json"
    path.write_bytes(encode_spec(spec))
    return path


def start(spec: Path, run_dir: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "qwen_train", "run", str(spec), "--run-dir", str(run_dir), "--nonce", "test", *extra]
    full_env = {**python_env(), **(env or {})}
    return subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen[bytes], timeout: float = 300) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode(errors="replace")


def run(spec: Path, run_dir: Path, *extra: str) -> tuple[int, str]:
    return finish(start(spec, run_dir, *extra))


def wait_until(probe: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def step_of(run_dir: Path) -> int:
    try:
        return read_status(run_dir / "status.json").step
    except StatusError:
        return -1


def kill(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def losses(run_dir: Path) -> list[tuple[int, float, float, float]]:
    rows = [msgspec.json.decode(line) for line in (run_dir / "losses.jsonl").read_bytes().splitlines() if line]
    return [(r["step"], r["total"], r["talker"], r["code_predictor"]) for r in rows]


def tree_digest(root: Path, skip: frozenset[str] = frozenset({"status.json", LOCK_FILE})) -> dict[str, bytes]:
    """Every file's bytes but the heartbeat's and the lock's, which name the process now running, not the run."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in skip}
