"""End to end: the real daemon launches the real trainer on the tiny model and bundle."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import msgspec
import pytest

from qwen_daemon.protocol import RunDetail, RunUsage
from qwen_daemon.protocol.client import DaemonClient
from qwen_train.spec import Posture, RunSpec, TrainConfig
from qwen_train.train.checkpointing.checkpoint import list_checkpoints, verify_checkpoint
from tests.conftest import python_env

T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def daemon(short_tmp: Path) -> Iterator[DaemonClient]:
    sock = short_tmp / "d.sock"
    cmd = [sys.executable, "-m", "qwen_daemon", "serve", "--state-dir", str(short_tmp / "state"),
           "--socket", str(sock), "--sample-period", "0.5"]
    proc = subprocess.Popen(cmd, env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: sock.exists(), 30, "the daemon socket")
        yield DaemonClient(sock)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def tiny_spec(demo_root: Path, name: str) -> RunSpec:
    return RunSpec(
        name=name, lane="language-expansion", model=str(demo_root / "model"), bundle=str(demo_root / "bundle"),
        posture=Posture(checkpoint_every=10, eval_every=5, keep_last=3),
        train=TrainConfig(batch_size=2, lr=1e-3, max_steps=100000, eval_max_rows=4),
    )


def test_launch_train_checkpoint_eval_summary_stop(demo_root: Path, daemon: DaemonClient) -> None:
    view = daemon.launch(spec=tiny_spec(demo_root, "e2e"))
    assert view.name == "e2e" and view.nonce

    def trained() -> RunDetail | None:
        d = daemon.run("e2e")
        st = d.status
        ok = d.run.health == "live" and st and st.last_checkpoint and st.last_eval
        return d if ok else None

    detail = wait_for(trained, 240, "a checkpoint and an eval")
    assert detail.status is not None and detail.status.nonce == view.nonce
    assert detail.run.step is not None and detail.run.step >= 10 and detail.run.loss is not None
    assert detail.run.eval_loss is not None
    summary = wait_for(lambda: (s := daemon.run("e2e").summary).samples >= 2 and s, 30, "resource samples")
    assert {"cpu_percent", "ram_used_bytes"} <= set(summary.metrics)
    cpu = summary.metrics["cpu_percent"]
    assert cpu.min <= cpu.median <= cpu.max and cpu.count == summary.samples
    assert summary.gpu_note == "no GPU: NVML library not found"

    daemon.stop("e2e")
    final = wait_for(lambda: (d := daemon.run("e2e")).run.state == "stopped" and d, 120, "the run to stop")
    assert final.run.exit_code == 5
    run_dir = Path(final.run.run_dir)
    ckpts = list_checkpoints(run_dir)
    assert ckpts, "no checkpoint on disk"
    assert final.status is not None and final.status.state == "stopped"
    assert verify_checkpoint(ckpts[-1]).step == final.status.step


def test_a_two_process_run_is_sampled_whole_and_stops_as_stopped(demo_root: Path, daemon: DaemonClient) -> None:
    """train.processes = 2 through the daemon: the supervisor and both ranks are the run's processes, and a
    graceful stop ends `stopped` with exit 5 (under `accelerate launch` every rank's exit would read 1)."""
    spec = tiny_spec(demo_root, "pair")
    spec = msgspec.structs.replace(spec, train=msgspec.structs.replace(spec.train, processes=2, device="cpu"))
    daemon.launch(spec=spec)
    wait_for(lambda: (d := daemon.run("pair")).run.step is not None and d.run.step >= 1 and d, 240, "step 1")

    def whole() -> RunUsage | None:
        sample = daemon.host().sample
        usage = sample.runs.get("pair") if sample is not None else None
        return usage if usage is not None and usage.processes >= 3 else None

    usage = wait_for(whole, 60, "the supervisor and both ranks in one sample")
    assert usage.rss_bytes > 0
    daemon.stop("pair")
    final = wait_for(lambda: (d := daemon.run("pair")).run.state not in ("running", "stopping") and d, 180,
                     "the run to end")
    assert (final.run.state, final.run.exit_code) == ("stopped", 5), final.run
    assert final.status is not None and final.status.state == "stopped"
    newest = list_checkpoints(Path(final.run.run_dir))[-1]
    meta = verify_checkpoint(newest)
    assert meta.step == final.status.step and meta.cursor.world_size == 2
