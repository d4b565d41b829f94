"""Fail-closed cursor: every impossible resume is refused, named, and changes nothing on disk."""

from __future__ import annotations

import shutil
from pathlib import Path

import msgspec
import pytest

from qwen_train import exitcodes
from qwen_train.bundle.build import build_bundle
from qwen_train.spec import Posture
from qwen_train.status import read_status
from qwen_train.train.checkpointing.checkpoint import META_FILE, STATE_FILE, CheckpointMeta, list_checkpoints
from tests.conftest import MakeDir
from tests.trainer_harness import losses, run, tree_digest, write_spec

POSTURE = Posture(checkpoint_every=4, eval_every=100, keep_last=3)


@pytest.fixture(scope="module")
def trained(demo_root: Path, module_dir: MakeDir) -> Path:
    """A run dir with one durable checkpoint at step 4 (of 8)."""
    where = module_dir("trained")
    spec = write_spec(demo_root, where, "base", 4, POSTURE)
    code, out = run(spec, where / "run")
    assert code == exitcodes.COMPLETED, out[-2000:]
    return where / "run"


@pytest.fixture
def run_copy(trained: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


@pytest.fixture(scope="module")
def other_bundle(demo_root: Path, module_dir: MakeDir) -> Path:
    """Same corpus, another split seed: same kind of data, different content."""
    out = module_dir("other") / "bundle"
    return build_bundle(demo_root / "corpus" / "corpus.jsonl", demo_root / "model", out, seed=7)


def _edit_meta(run_dir: Path, **cursor_fields: int) -> None:
    ckpt = list_checkpoints(run_dir)[-1]
    meta = msgspec.json.decode((ckpt / META_FILE).read_bytes(), type=CheckpointMeta)
    meta = msgspec.structs.replace(meta, cursor=msgspec.structs.replace(meta.cursor, **cursor_fields))
    (ckpt / META_FILE).write_bytes(msgspec.json.encode(meta))


def _refused(run_dir: Path, spec: Path, expected: str, *extra: str) -> None:
    before = tree_digest(run_dir)
    code, out = run(spec, run_dir, "--resume", *extra)
    assert code == exitcodes.CURSOR_REJECTED, out[-2000:]
    assert expected in out
    status = read_status(run_dir / "status.json")
    assert status.state == "cursor_rejected" and expected in (status.cursor_check or "")
    assert tree_digest(run_dir) == before, "a refused resume changed files on disk"


def test_bundle_fingerprint_differs(demo_root: Path, run_copy: Path, other_bundle: Path, tmp_path: Path) -> None:
    spec = write_spec(demo_root, tmp_path, "base", 8, POSTURE)
    spec.write_bytes(spec.read_bytes().replace(str(demo_root / "bundle").encode(), str(other_bundle).encode()))
    _refused(run_copy, spec, "bundle fingerprint differs")


def test_bundle_root_override_with_other_content(demo_root: Path, run_copy: Path, other_bundle: Path,
                                                 tmp_path: Path) -> None:
    spec = write_spec(demo_root, tmp_path, "base", 8, POSTURE)
    _refused(run_copy, spec, "bundle fingerprint differs", "--bundle-root", str(other_bundle))


def test_bundle_root_override_with_same_content_is_accepted(demo_root: Path, run_copy: Path, tmp_path: Path) -> None:
    moved = tmp_path / "moved-bundle"
    shutil.copytree(demo_root / "bundle", moved)
    spec = write_spec(demo_root, tmp_path, "base", 8, POSTURE)
    code, out = run(spec, run_copy, "--resume", "--bundle-root", str(moved))
    assert code == exitcodes.COMPLETED, out[-2000:]
    assert (read_status(run_copy / "status.json").cursor_check or "").startswith("ok:")


def test_position_past_end_of_epoch(demo_root: Path, run_copy: Path, tmp_path: Path) -> None:
    _edit_meta(run_copy, position=10_000)
    _refused(run_copy, write_spec(demo_root, tmp_path, "base", 8, POSTURE), "past the end of its epoch")


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("batch_size", 4, "batch_size changed from 2 to 4"),
    ("seed", 99, "seed changed from 1234 to 99"),
])
def test_settings_that_move_the_position(demo_root: Path, run_copy: Path, tmp_path: Path, field: str, value: int,
                                         expected: str) -> None:
    spec = write_spec(demo_root, tmp_path, "base", 8, POSTURE, **{field: value})
    _refused(run_copy, spec, expected)


def test_world_size_changed(demo_root: Path, run_copy: Path, tmp_path: Path) -> None:
    _edit_meta(run_copy, world_size=2)
    _refused(run_copy, write_spec(demo_root, tmp_path, "base", 8, POSTURE), "world_size changed from 2 to 1")


@pytest.mark.parametrize(("damage", "expected"), [("truncate", "truncated"), ("flip", "does not match its manifest")])
def test_damaged_checkpoint(demo_root: Path, run_copy: Path, tmp_path: Path, damage: str, expected: str) -> None:
    state = list_checkpoints(run_copy)[-1] / STATE_FILE
    data = bytearray(state.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    state.write_bytes(bytes(data))
    _refused(run_copy, write_spec(demo_root, tmp_path, "base", 8, POSTURE), expected)


def test_reset_cursor_is_explicit_and_recorded(demo_root: Path, run_copy: Path, tmp_path: Path) -> None:
    spec = write_spec(demo_root, tmp_path, "base", 8, POSTURE, batch_size=4)
    code, out = run(spec, run_copy, "--resume", "--reset-cursor")
    assert code == exitcodes.COMPLETED, out[-2000:]
    status = read_status(run_copy / "status.json")
    assert (status.cursor_check or "").startswith("reset:")
    assert any(e.kind == "cursor_reset" for e in status.events)
    assert [s[0] for s in losses(run_copy)] == list(range(1, 9))
