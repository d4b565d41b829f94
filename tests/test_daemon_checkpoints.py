"""A run's kept checkpoints in its detail, from a real daemon, over checkpoints written by the trainer's own code.

The checkpoints are written with qwen_train's `save_checkpoint` (real torch
state, real meta.json) into the run dir of a run the daemon launched (the
fake trainer) and stopped. The daemon reads them through the torch-free
contract (qwen_train/checkpoint_files.py) and shows them as rows; every
listing is compared with what the trainer's readers say of the same files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from qwen_daemon.protocol import CheckpointView
from qwen_daemon.runs.checkpoints import list_kept
from qwen_train.checkpoint_files import CKPT_DIR, META_FILE, PREFIX
from qwen_train.spec import encode_spec
from qwen_train.train.checkpointing import checkpoint as trainer_ckpt
from qwen_train.train.data.cursor import Cursor
from tests.conftest import MakeDir, python_env
from tests.test_daemon_harness import DaemonProcess, make_spec, remove_tree, short_tmp_dir, trainer_wrapper, wait_until
from tests.test_daemon_lifecycle import launch

RUN = "ck"


@pytest.fixture(scope="module")
def daemon(module_dir: MakeDir) -> Iterator[DaemonProcess]:
    short = short_tmp_dir()
    root = module_dir("ck")
    proc = DaemonProcess(root / "state", short / "d.sock", trainer_wrapper(short), "--sample-period", "0.5").start()
    try:
        launch(proc, root, RUN)
        proc.client.stop(RUN)
        wait_until(lambda: proc.client.run(RUN).run.state == "stopped", 15, "the run to stop")
        yield proc
    finally:
        proc.stop()
        remove_tree(short)


def save(run_dir: Path, step: int, epoch: int, position: int, numbers: int = 1000) -> Path:
    """A durable checkpoint through the trainer's own writer (temp dir, fsync, rename)."""
    cursor = Cursor(epoch=epoch, position=position, seed=7, batch_size=2, world_size=1, rows=250)
    spec = encode_spec(make_spec(run_dir.parent, RUN)).decode()
    fields = {"cursor": cursor, "spec": spec, "bundle_fingerprint": "f" * 64}
    return trainer_ckpt.save_checkpoint(run_dir, step, {"weights": torch.arange(numbers, dtype=torch.float32)}, fields)


def disk_size(ckpt: Path) -> int:
    return sum(p.stat().st_size for p in ckpt.iterdir() if p.is_file())


def rows(daemon: DaemonProcess) -> list[CheckpointView]:
    detail = daemon.client.run(RUN)
    assert detail.checkpoints_error is None, detail.checkpoints_error
    return detail.checkpoints


def test_kept_checkpoints_newest_last_with_cursor_size_and_resume(daemon: DaemonProcess) -> None:
    run_dir = daemon.run_dir(RUN)
    assert rows(daemon) == []  # the fake trainer writes none
    for step, epoch, position in ((100, 0, 100), (200, 1, 75), (300, 2, 50)):
        save(run_dir, step, epoch, position, numbers=step * 10)
    temp = run_dir / CKPT_DIR / f".tmp-{PREFIX}00000400"  # a save in progress: not durable yet
    temp.mkdir()
    (temp / "state.pt").write_bytes(b"half")
    shown = rows(daemon)
    theirs = trainer_ckpt.list_checkpoints(run_dir)
    assert [r.name for r in shown] == [p.name for p in theirs] == ["step-00000100", "step-00000200", "step-00000300"]
    assert [r.step for r in shown] == [trainer_ckpt.read_meta(p).step for p in theirs] == [100, 200, 300]
    assert [r.resume for r in shown] == [False, False, True]
    for row, path in zip(shown, theirs, strict=True):
        meta = trainer_ckpt.read_meta(path)
        assert row.error is None, row.error
        assert (row.epoch, row.position, row.batches_per_epoch) == (
            meta.cursor.epoch, meta.cursor.position, meta.cursor.batches_per_epoch
        ) != (None, None, None)
        assert row.batches_per_epoch == 125
        assert row.created_at == meta.created_at
        assert row.size_bytes == disk_size(path) > meta.files[trainer_ckpt.STATE_FILE].size
    assert shown[0].size_bytes < shown[1].size_bytes < shown[2].size_bytes  # sizes are each checkpoint's own


def test_broken_checkpoints_are_rows_with_their_error(daemon: DaemonProcess) -> None:
    run_dir = daemon.run_dir(RUN)
    truncated = save(run_dir, 500, 3, 10)
    state = truncated / trainer_ckpt.STATE_FILE
    with state.open("r+b") as handle:
        handle.truncate(state.stat().st_size // 2)
    corrupt = save(run_dir, 600, 3, 20)
    (corrupt / META_FILE).write_text('{"step": 600, "cursor": ')
    shown = {row.step: row for row in rows(daemon)}  # a 200: one bad checkpoint does not fail the detail
    assert shown[500].error is not None and "state.pt is" in shown[500].error and "(truncated?)" in shown[500].error
    assert shown[500].epoch == 3 and shown[500].position == 10  # its meta still reads
    with pytest.raises(trainer_ckpt.CheckpointError, match="truncated"):
        trainer_ckpt.verify_checkpoint(truncated)  # what the trainer's own check says of it
    assert shown[600].error is not None and "malformed meta.json" in shown[600].error
    assert shown[600].resume and shown[600].created_at is None and shown[600].size_bytes == disk_size(corrupt)
    with pytest.raises(trainer_ckpt.CheckpointError, match="malformed meta.json"):
        trainer_ckpt.read_meta(corrupt)
    assert [row.resume for row in rows(daemon)].count(True) == 1


def test_an_unlistable_checkpoints_dir_is_an_error_not_a_failed_detail(daemon: DaemonProcess, tmp_path: Path) -> None:
    launch(daemon, tmp_path, "ck-odd")
    daemon.client.stop("ck-odd")
    wait_until(lambda: daemon.client.run("ck-odd").run.state == "stopped", 15, "ck-odd to stop")
    (daemon.run_dir("ck-odd") / CKPT_DIR).write_text("not a dir")
    detail = daemon.client.run("ck-odd")
    assert detail.checkpoints == [] and detail.checkpoints_error is not None
    assert f"cannot list {daemon.run_dir('ck-odd') / CKPT_DIR}" in detail.checkpoints_error
    assert list_kept(tmp_path) == []  # no checkpoints dir: none kept, no error


def test_a_diagnose_jobs_checkpoints_are_its_runs_and_the_daemon_has_no_torch(daemon: DaemonProcess) -> None:
    save(daemon.run_dir(RUN), 700, 4, 0)
    job = daemon.client.diagnose(RUN).name
    try:
        shown = daemon.client.run(job).checkpoints
        assert shown == daemon.client.run(RUN).checkpoints and shown[-1].step == 700 and shown[-1].resume
    finally:
        (daemon.run_dir(RUN) / "release").touch()  # the fake replay ends
        wait_until(lambda: daemon.client.run(job).run.state != "running", 15, "the replay to end")
    assert daemon.proc is not None
    maps = Path(f"/proc/{daemon.proc.pid}/maps").read_text()
    assert "libtorch" not in maps and "torch/lib" not in maps  # it listed checkpoints without loading torch
    imports = subprocess.run(
        [sys.executable, "-c", "import sys, qwen_daemon.service; print('torch' in sys.modules)"],
        capture_output=True, text=True, timeout=60, check=True, env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert imports.stdout.strip() == "False"


def test_show_prints_the_kept_checkpoints_with_the_resume_target(daemon: DaemonProcess) -> None:
    run_dir = daemon.run_dir(RUN)
    save(run_dir, 800, 5, 10)
    save(run_dir, 900, 5, 60)
    (run_dir / CKPT_DIR / f"{PREFIX}00000800" / "state.pt").write_bytes(b"short")
    out = subprocess.run([sys.executable, "-m", "qwen_daemon", "show", RUN, "--socket", str(daemon.socket)],
                         capture_output=True, text=True, timeout=60, env=python_env(), check=True).stdout
    lines = {line.split()[0]: line for line in out.splitlines()[out.splitlines().index("checkpoints kept:") + 1:]
             if line.startswith("  step-")}
    assert "epoch 5 batch 60/125" in lines["step-00000900"] and "<- resume" in lines["step-00000900"]
    assert "BROKEN: state.pt is 5 bytes" in lines["step-00000800"] and "<- resume" not in lines["step-00000800"]
