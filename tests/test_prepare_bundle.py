"""A multi-source bundle through the whole pipeline: roles, splits, anchors, stats, rejects, verification."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import msgspec
import numpy as np
import pytest
import soundfile as sf

from qwen_train.bundle.fingerprint import verify_bundle
from qwen_train.bundle.manifest import BundleError, read_manifest, read_spk_id_map
from qwen_train.prepare.run import prepare
from qwen_train.prepare.spec import (
    PrepareSpec,
    SourceSpec,
    SplitSpec,
    encode_prepare_spec,
    load_prepare_spec,
)
from qwen_train.spec import SpecError
from tests.conftest import REPO, MakeDir, python_env
from tests.prepare_layouts import make_fleurs, make_rixvox, make_waxholm, speak_clips


@pytest.fixture(scope="module")
def built(module_dir: MakeDir, demo_root: Path) -> Path:
    """rixvox (train) + fleurs (eval) + waxholm (benchmark) -> one bundle, via a spec file."""
    root = module_dir("multi")
    clips = speak_clips(root / "clips", per_speaker=2)
    make_rixvox(root / "rix", clips)
    make_fleurs(root / "fleurs", clips)
    make_waxholm(root / "wax", clips)
    spec = PrepareSpec(
        name="pilot-sv",
        out="bundle",
        model=str(demo_root / "model"),
        sources=[
            SourceSpec(kind="rixvox", path="rix/data"),
            SourceSpec(kind="fleurs", path="fleurs", splits=["dev"]),
            SourceSpec(kind="waxholm", path="wax", role="benchmark"),
        ],
        split=SplitSpec(held_out_speakers=2, held_out_utterances=1),
        batch_size=8,
    )
    (root / "spec.json").write_bytes(encode_prepare_spec(spec))
    outcome = prepare(load_prepare_spec(root / "spec.json"))
    assert outcome.code == 0, outcome.message
    return root / "bundle"


def test_roles_splits_and_no_held_out_speaker_in_train(built: Path) -> None:
    rows = read_manifest(built)
    assert {r.source: r.role for r in rows} == {"rixvox": "train", "fleurs": "eval", "waxholm": "benchmark"}
    train_speakers = {r.speaker_id for r in rows if r.split == "train"}
    held = {r.speaker_id for r in rows if r.eval_kind == "held_out_speaker"}
    assert train_speakers and held and not held & train_speakers
    assert {r.speaker_id.split(":")[0] for r in rows} == {"rixvox", "fleurs", "waxholm"}
    assert all(r.split == "eval" for r in rows if r.role != "train")
    utt = [r for r in rows if r.eval_kind == "held_out_utterance"]
    assert utt and all(r.speaker_id in train_speakers for r in utt)
    splits = msgspec.json.decode((built / "splits.json").read_bytes())
    assert set(splits["train"]) == {r.id for r in rows if r.split == "train"}
    assert set(read_spk_id_map(built)) == {r.speaker_id for r in rows}


def test_rows_point_inside_the_bundle_and_anchors_follow_the_rule(built: Path) -> None:
    rows = read_manifest(built)
    anchors = msgspec.json.decode((built / "anchors.json").read_bytes())
    assert set(anchors) == {r.speaker_id for r in rows}
    for r in rows:
        for rel in (r.audio, r.codes, r.ref_audio):
            assert (built / rel).resolve().is_relative_to(built.resolve()) and (built / rel).is_file()
        assert np.load(built / r.codes).shape == (r.frames, 16)
        assert r.ref_audio == anchors[r.speaker_id]["path"]
    for sid, a in anchors.items():
        info = sf.info(str(built / a["path"]))
        assert (info.samplerate, info.channels) == (24000, 1)
        if a["rule"] in ("clip_3_8s", "cut_8s"):
            assert 3.0 <= info.duration <= 8.0 + 1e-6, (sid, a)
        src_row = next(r for r in rows if r.id == a["from_row"])
        assert src_row.speaker_id == sid and src_row.eval_kind != "held_out_utterance"


def test_every_reject_listed_and_counted(built: Path) -> None:
    rejects = [msgspec.json.decode(line) for line in (built / "rejects.jsonl").read_bytes().splitlines()]
    stats = msgspec.json.decode((built / "stats.json").read_bytes())
    for source, s in stats["per_source"].items():
        listed = Counter(r["reason"] for r in rejects if r["source"] == source)
        assert dict(listed) == s["rejected_by_reason"]
        assert s["imported"] == s["accepted"] + s["rejected"] + s["unselected_by_share"]
    by_reason = Counter(r["reason"] for r in rejects)
    for reason in ("decode_error", "too_long", "speech_rate", "duplicate_id", "missing_label", "not_swedish",
                   "missing_audio", "bad_metadata", "silent", "clipping", "sample_rate", "empty_text"):
        assert by_reason[reason] >= 1, reason
    assert stats["frames"]["max"] == stats["max_frames_per_row"] > 0
    assert sum(stats["duration_histogram"].values()) == stats["rows"]
    assert set(stats["per_role"]) == {"train", "eval", "benchmark"}


def test_read_only_and_verified(built: Path) -> None:
    assert len(verify_bundle(built)) == 64
    assert all(not (p.stat().st_mode & 0o222) for p in [built, *built.rglob("*")])


@pytest.mark.parametrize("damage", ["flip", "delete_anchor", "add"])
def test_verify_names_the_change(built: Path, tmp_path: Path, damage: str) -> None:
    copy = tmp_path / "b"
    shutil.copytree(built, copy)
    for p in [copy, *copy.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    row = read_manifest(copy)[0]
    if damage == "flip":
        target = copy / row.codes
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0x01
        target.write_bytes(bytes(data))
        expected = f"changed file {row.codes}"
    elif damage == "delete_anchor":
        (copy / row.ref_audio).unlink()
        expected = f"missing file {row.ref_audio}"
    else:
        (copy / "anchors" / "extra.wav").write_bytes(b"RIFF")
        expected = "extra file anchors/extra.wav"
    with pytest.raises(BundleError, match=expected):
        verify_bundle(copy)
    cli = subprocess.run([sys.executable, "-m", "qwen_train", "bundle", "verify", str(copy)], capture_output=True,
                         text=True, env=python_env(), cwd=REPO)
    assert cli.returncode != 0 and expected in cli.stderr


def test_waxholm_needs_a_declared_role() -> None:
    from qwen_train.prepare.spec import validate_prepare_spec

    with pytest.raises(SpecError, match="declare its role"):
        validate_prepare_spec(PrepareSpec(name="x", out="o", model="m", sources=[SourceSpec(kind="waxholm", path="w")]))


def test_trainer_refuses_a_bundle_that_fails_verification(built: Path, demo_root: Path, tmp_path: Path) -> None:
    from qwen_train.spec import RunSpec, encode_spec
    from qwen_train.status import read_status

    copy = tmp_path / "b"
    shutil.copytree(built, copy)
    (copy / "codes").chmod(0o755)
    (copy / "codes" / "stray.npy").write_bytes(b"x")
    spec = RunSpec(name="refuse", lane="language-expansion", model=str(demo_root / "model"), bundle=str(copy))
    (tmp_path / "spec.json").write_bytes(encode_spec(spec))
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "qwen_train", "run", str(tmp_path / "spec.json"), "--run-dir",
                           str(run_dir)], capture_output=True, text=True, env=python_env(), cwd=REPO, timeout=300)
    assert proc.returncode != 0
    assert "failed verification" in proc.stderr and "extra file codes/stray.npy" in proc.stderr
    assert read_status(run_dir / "status.json").state == "failed"
