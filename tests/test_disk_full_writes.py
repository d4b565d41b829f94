"""Each writer a run keeps open, on a real tmpfs that fills under it: nothing torn, nothing half replaced, DiskFull.

A tmpfs allocates a page at a time, so a write that crosses into a page the file system no longer has is cut
short there: the torn record a full disk really leaves. Each writer must cut it back (the losses log, the
TensorBoard events, an audit log) or leave the old file whole (status.json); and the disk plan's numbers
are checked against the real model's config and against the free space of a small run dir.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import msgspec
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from qwen_train import exitcodes
from qwen_train.atomic import append_durable, append_whole, undo_append
from qwen_train.disk import DiskFull, disk_errno, free_space
from qwen_train.plan.disk import disk_text, plan_disk
from qwen_train.spec import Posture, RunSpec, TrainConfig
from qwen_train.status import Losses, read_status
from qwen_train.train.board import Board
from qwen_train.train.checkpointing.losslog import LOSSES_FILE, append_losses
from qwen_train.train.device.diskspace import end_disk_full
from qwen_train.train.heartbeat import Heartbeat
from tests.small_fs import MiB, fill, leftovers, small_fs

PAGE = 4096
REFERENCE = Path(__file__).resolve().parents[1] / "bench" / "train_model_config.json"
GIB = 2**30


def pad_to_page_edge(path: Path, short_by: int) -> None:
    """Grow `path` with a valid JSON line to `short_by` bytes before its page ends."""
    size = path.stat().st_size if path.exists() else 0
    room = (-size - short_by) % PAGE or PAGE
    with path.open("ab") as handle:
        handle.write(b'{"pad":"' + b"x" * (room - 10) + b'"}\n')


def test_status_json_keeps_its_last_good_content_when_it_cannot_be_rewritten() -> None:
    with small_fs(1) as disk:
        beat = Heartbeat(disk, "r", "n", 10)
        good = beat.update(step=3)
        fill(disk)
        with pytest.raises(DiskFull) as full:
            for step in range(4, 64):  # a status grows with its events; one write soon needs a new page
                beat.event("note", "x" * 200, step)
        assert full.value.errno == errno.ENOSPC and full.value.what == "status.json" and "ENOSPC" in str(full.value)
        kept = read_status(disk / "status.json")
        assert kept == beat.written and kept.step == good.step
        assert leftovers(disk) == []  # the temp file of the failed rewrite is gone
        assert not beat.last_words("failed_disk_full", "disk full", "disk_full")
        assert read_status(disk / "status.json") == kept


def test_a_loss_line_cut_short_by_the_disk_is_cut_back() -> None:
    with small_fs(1) as disk:
        append_losses(disk, 1, Losses(1.0, 0.5, 0.5))
        pad_to_page_edge(disk / LOSSES_FILE, short_by=10)
        before = (disk / LOSSES_FILE).read_bytes()
        fill(disk)
        with pytest.raises(DiskFull) as full:
            append_losses(disk, 2, Losses(0.9, 0.45, 0.45))
        assert full.value.what == LOSSES_FILE and disk_errno(full.value) == errno.ENOSPC
        assert (disk / LOSSES_FILE).read_bytes() == before  # 10 bytes of the line fitted, and went again


def test_tensorboard_events_end_at_their_last_whole_record() -> None:
    with small_fs(1) as disk:
        board = Board(disk / "tensorboard")
        fill(disk)
        written = 0
        with pytest.raises(DiskFull) as full:
            for step in range(1, 10_000):
                board.add_scalar("train/total", 1.0 / step, step)
                written = step
        assert full.value.what == "TensorBoard events" and written > 0
        events = EventAccumulator(str(disk / "tensorboard"))
        events.Reload()
        assert [e.step for e in events.Scalars("train/total")] == list(range(1, written + 1))


def test_an_audit_record_is_whole_or_absent_and_its_companion_can_undo_it() -> None:
    with small_fs(1) as disk:
        log = disk / "audit.jsonl"
        start = append_durable(log, b'{"name": "a"}')
        assert start == 0
        before = log.read_bytes()
        fill(disk)
        with pytest.raises(OSError) as full:
            append_durable(log, json.dumps({"name": "b" * (3 * PAGE)}).encode())
        assert full.value.errno == errno.ENOSPC and log.read_bytes() == before
        (disk / "filler").unlink()
        mark = append_whole(log, b'{"name": "c"}\n')
        undo_append(log, mark)
        assert log.read_bytes() == before


def spec_for(root: Path, config: dict[str, object], **posture: int) -> RunSpec:
    (root / "model").mkdir(exist_ok=True)
    (root / "model" / "config.json").write_text(json.dumps(config))
    return RunSpec(name="full", lane="benchmark", model=str(root / "model"), bundle=str(root),
                   posture=Posture(**posture), train=TrainConfig(max_steps=1000))


def test_the_disk_plan_of_the_full_model_and_against_a_small_run_dir(tmp_path: Path) -> None:
    config = json.loads(REFERENCE.read_text())
    spec = spec_for(tmp_path, config)
    plan = plan_disk(spec, recipe="fp32-master")
    assert 21.4 * GIB < plan.checkpoint_bytes < 21.7 * GIB  # fp32 weights and two fp32 AdamW moments
    assert 10.6 * GIB < plan.checkpoints["lean"] < 10.9 * GIB
    assert 150 * MiB < plan.checkpoints["lora"] < 250 * MiB  # rank 16 on seven projections of 28 layers
    assert plan.parts["kept checkpoints"] == 3 * plan.checkpoint_bytes
    assert 86 * GIB < plan.peak_bytes < 95 * GIB  # four checkpoints and a 7 GiB fp32 export: "about 86 GiB" and more
    lean = plan_disk(spec, recipe="lean")
    assert lean.checkpoint_bytes == plan.checkpoints["lean"]
    with small_fs(64) as disk:
        against = plan_disk(spec, disk / "runs" / "full", recipe="fp32-master")
        assert against.fits is False and against.free_bytes == free_space(disk).free_bytes
        assert against.need_bytes == against.peak_bytes and against.checked == str(disk)
        text = disk_text(against)
        assert "does NOT fit" in text and str(disk) in text and "posture.keep_last, now 3" in text
    decoded = msgspec.json.decode(msgspec.json.encode(plan), type=type(plan))
    assert decoded == plan


def test_a_rust_writer_that_hits_a_full_disk_is_a_full_disk() -> None:
    """safetensors raises its own error whose only trace of ENOSPC is Rust's "(os error 28)"."""
    import torch
    from safetensors.torch import save_file

    with small_fs(1) as disk:
        fill(disk)
        with pytest.raises(Exception) as raised:
            save_file({"w": torch.zeros(256 * 1024)}, str(disk / "w.safetensors"))
        assert not isinstance(raised.value, OSError)  # what the text rule is for
        assert disk_errno(raised.value) == errno.ENOSPC
    assert disk_errno(RuntimeError("I/O error: Permission denied (os error 13)")) is None


def test_a_full_quota_is_told_apart_from_a_full_disk(tmp_path: Path) -> None:
    """EDQUOT with the file system's space still free: the advice is the quota's, naming the writer, since the
    free space printed beside it is space this user may not use. (A real quota cannot be made here: this kernel
    has neither CONFIG_QUOTA nor tmpfs quotas, so the write's errno is given, as the checkpoint writer raises it.)"""
    beat = Heartbeat(tmp_path, "r", "n", 10)
    beat.update(step=3)
    quota = DiskFull("checkpoint step-00000004", tmp_path / "checkpoints", errno=errno.EDQUOT)
    assert end_disk_full(beat, tmp_path, Posture(), quota) == exitcodes.FAILED_DISK_FULL
    said = read_status(tmp_path / "status.json")
    assert said.state == "failed_disk_full" and said.message is not None
    assert "disk quota exceeded (EDQUOT)" in said.message and "A quota is full, not the disk" in said.message
    assert f"(uid {os.geteuid()})" in said.message and "setquota" in said.message
    assert "To go on: free space" not in said.message

    full = DiskFull("checkpoint step-00000004", tmp_path / "checkpoints", errno=errno.ENOSPC)
    end_disk_full(Heartbeat(tmp_path, "r", "n", 10), tmp_path, Posture(), full)
    message = read_status(tmp_path / "status.json").message or ""
    assert "To go on: free space" in message and "A quota is full" not in message and "setquota" not in message
