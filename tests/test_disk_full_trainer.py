"""A disk that fills under a real trainer (the tiny model, CPU) on a real, small tmpfs: refused before a checkpoint,
ENOSPC mid-checkpoint and mid-status, each ending failed_disk_full (exit 9) with nothing partial left, and a resume
once space returns that continues exactly from the newest durable checkpoint.

A tiny-model checkpoint is about 40 MiB, so a 110 MiB file system holds two of the posture's four (three kept and
one being written): the operator's demo from issue 19. A write that meets a full disk mid-way is made by pausing
the trainer at a named point (QWEN_TEST_PAUSE) and filling the file system under it, as another tenant would.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from qwen_train import exitcodes
from qwen_train.spec import Posture
from qwen_train.status import read_status
from qwen_train.train.checkpointing.checkpoint import list_checkpoints, verify_checkpoint
from tests.conftest import MakeDir, python_env
from tests.small_fs import MiB, fill, grow, leftovers, small_fs
from tests.trainer_harness import finish, losses, run, start, write_spec

POSTURE = Posture(checkpoint_every=2, eval_every=3, keep_last=3)
STEPS = 6
FS_MIB = 110


@pytest.fixture(scope="module")
def reference_run(demo_root: Path, module_dir: MakeDir) -> Path:
    where = module_dir("diskref")
    code, out = run(write_spec(demo_root, where, "ref", STEPS, POSTURE), where / "run")
    assert code == exitcodes.COMPLETED, out[-2000:]
    return where / "run"


@pytest.fixture(scope="module")
def reference(reference_run: Path) -> list[tuple[int, float, float, float]]:
    return losses(reference_run)


def names(run_dir: Path) -> list[str]:
    return [c.name for c in list_checkpoints(run_dir)]


def paused_then_filled(spec: Path, run_dir: Path, point: str, leave: int, env: dict[str, str] | None = None
                       ) -> tuple[int, str]:
    """Run until the trainer sleeps at `point`, take all but `leave` bytes of its disk, let it go on."""
    proc = start(spec, run_dir, env={"QWEN_TEST_PAUSE": f"{point}:8", **(env or {})})
    assert proc.stdout is not None
    seen = b""
    while b"test pause at " + point.split("@")[0].encode() not in seen:
        line = proc.stdout.readline()
        assert line, f"the trainer ended before pausing at {point}: {seen.decode(errors='replace')[-2000:]}"
        seen += line
    fill(run_dir.parent, leave=leave)
    code, rest = finish(proc)
    return code, seen.decode(errors="replace") + rest


def assert_ended_disk_full(run_dir: Path, out: str, code: int, *words: str) -> str:
    assert code == exitcodes.FAILED_DISK_FULL == 9, out[-3000:]
    assert exitcodes.state_for_exit(code) == "failed_disk_full"
    status = read_status(run_dir / "status.json")
    message = status.message or ""
    assert status.state == "failed_disk_full", (status.state, message)
    for word in ("disk full", str(run_dir), "intact: --resume continues from it", "posture.keep_last is 3",
                 "another disk", *words):
        assert word in message, (word, message)
    assert message in out  # the log says it too
    assert [e.kind for e in status.events].count("disk_full") == 1
    assert leftovers(run_dir) == []  # no temp checkpoint, no temp status, no reserve left holding space
    for ckpt in list_checkpoints(run_dir):
        verify_checkpoint(ckpt)
    return message


def assert_logs_whole(run_dir: Path) -> None:
    """Every losses line parses and the TensorBoard events load to their last record: nothing torn."""
    assert all(step > 0 for step, *_ in losses(run_dir))
    board = EventAccumulator(str(run_dir / "tensorboard"))
    board.Reload()
    assert board.Scalars("train/total")


def test_a_checkpoint_that_would_not_fit_is_refused_and_resume_after_space_returns_is_exact(
        demo_root: Path, tmp_path: Path, reference: list[tuple[int, float, float, float]]) -> None:
    spec = write_spec(demo_root, tmp_path, "small", STEPS, POSTURE)
    with small_fs(FS_MIB) as disk:
        run_dir = disk / "run"
        code, out = run(spec, run_dir)
        assert "room for 2 more: SHORT of the 4 more the posture needs" in out  # said at the start
        message = assert_ended_disk_full(run_dir, out, code, "the checkpoint of step 6 needs", "MiB free (of 110 MiB)",
                                         "it was not started", "step-00000004")
        assert names(run_dir) == ["step-00000002", "step-00000004"]
        assert losses(run_dir)[:4] == reference[:4]
        assert_logs_whole(run_dir)
        assert "4 checkpoints of" in message

        plan = subprocess.run([sys.executable, "-m", "qwen_train", "plan", str(spec), "--run-dir", str(run_dir)],
                              capture_output=True, text=True, check=False, env=python_env())
        assert plan.returncode == exitcodes.FAILED and "does NOT fit" in plan.stdout, plan.stdout + plan.stderr

        grow(disk, 300)
        code, out = run(spec, run_dir, "--resume")
        assert code == exitcodes.COMPLETED, out[-3000:]
        assert losses(run_dir) == reference  # steps 5 and 6 as if the disk had never filled
        assert names(run_dir) == ["step-00000002", "step-00000004", "step-00000006"]
        resumed = read_status(run_dir / "status.json")
        assert any(e.kind == "resume" and "step-00000004" in e.message for e in resumed.events)
        assert leftovers(run_dir) == []


def test_enospc_mid_checkpoint_in_the_background_writer_removes_the_partial_one(
        demo_root: Path, tmp_path: Path, reference: list[tuple[int, float, float, float]]) -> None:
    """The GPU path's writer thread (async_checkpoint), on a CPU: state.pt cut short by the disk at step 4."""
    spec = write_spec(demo_root, tmp_path, "midckpt", STEPS, POSTURE)
    with small_fs(FS_MIB) as disk:
        run_dir = disk / "run"
        code, out = paused_then_filled(spec, run_dir, "checkpoint-before-write@4", leave=10 * MiB,
                                       env={"QWEN_TRAIN_PERF": '{"async_checkpoint": true}'})
        assert_ended_disk_full(run_dir, out, code, "writing checkpoint step-00000004", "ENOSPC",
                               "what it had half written was removed", "step-00000002")
        assert names(run_dir) == ["step-00000002"]
        assert not (run_dir / "checkpoints" / ".tmp-step-00000004").exists()
        assert "Traceback" not in out
        assert_logs_whole(run_dir)
        assert losses(run_dir)[:2] == reference[:2]


def test_enospc_mid_status_ends_plainly_after_the_durable_checkpoint(demo_root: Path, tmp_path: Path) -> None:
    """The disk fills completely once step 4's checkpoint is durable: the status naming it is what fails."""
    spec = write_spec(demo_root, tmp_path, "midstatus", STEPS, POSTURE)
    with small_fs(FS_MIB) as disk:
        run_dir = disk / "run"
        code, out = paused_then_filled(spec, run_dir, "checkpoint-before-prune@4", leave=0)
        assert_ended_disk_full(run_dir, out, code, "writing status.json", "ENOSPC", "step-00000004")
        assert names(run_dir) == ["step-00000002", "step-00000004"]
        status = read_status(run_dir / "status.json")
        assert status.last_checkpoint is not None and status.last_checkpoint.step == 4
        assert "Traceback" not in out
        assert_logs_whole(run_dir)


def export(run_dir: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qwen_train", "export", str(run_dir), "--out", str(out)],
                          capture_output=True, text=True, check=False, env=python_env())


def test_an_export_that_meets_a_full_disk_removes_its_half_written_dir_and_succeeds_once_there_is_room(
        reference_run: Path) -> None:
    with small_fs(64) as disk:
        fill(disk, leave=4 * MiB)  # the tiny model's export is some 20 MiB: it fails mid-write
        before = sorted(p.name for p in disk.iterdir())
        done = export(reference_run, disk / "exp")
        assert done.returncode == exitcodes.FAILED_DISK_FULL, done.stdout + done.stderr
        for word in ("writing export exp in", str(disk), "ENOSPC", "the half-written export was removed",
                     "export again"):
            assert word in done.stderr, (word, done.stderr)
        assert "Traceback" not in done.stderr
        assert sorted(p.name for p in disk.iterdir()) == before  # no .exp.exporting holding the space
        (disk / "filler").unlink()
        done = export(reference_run, disk / "exp")
        assert done.returncode == exitcodes.COMPLETED, done.stdout + done.stderr
        assert (disk / "exp" / "export.json").is_file() and (disk / "exp" / "speech_tokenizer").is_dir()
