"""The espeak-ng Swedish corpus and the frozen bundle built from it."""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from qwen_train.bundle.fingerprint import verify_bundle
from qwen_train.bundle.manifest import BundleError, read_manifest, read_spk_id_map
from qwen_train.corpus.espeak import read_corpus


def test_corpus_is_swedish_24k_mono_with_distinct_voices(demo_root: Path) -> None:
    rows = read_corpus(demo_root / "corpus" / "corpus.jsonl")
    speakers = defaultdict(list)
    for r in rows:
        speakers[r.speaker].append(r)
    assert len(rows) >= 40 and len(speakers) >= 4
    assert all(any(ch in r.text for ch in "åäöÅÄÖ") for r in rows)
    pitches = {}
    for spk, spk_rows in speakers.items():
        info = sf.info(str(demo_root / "corpus" / spk_rows[0].audio))
        assert (info.samplerate, info.channels) == (24000, 1)
        audio, _ = sf.read(str(demo_root / "corpus" / spk_rows[0].audio), dtype="float32")
        f0 = librosa.yin(audio, fmin=60, fmax=400, sr=24000)
        pitches[spk] = float(np.median(f0))
    ordered = sorted(pitches.values())
    assert min(b - a for a, b in zip(ordered, ordered[1:], strict=False)) > 3.0, pitches


def test_bundle_rows_splits_anchors_and_fingerprint(demo_root: Path) -> None:
    bundle = demo_root / "bundle"
    rows = read_manifest(bundle)
    spk_map = read_spk_id_map(bundle)
    assert {r.speaker_id for r in rows} == set(spk_map)
    held = {r.speaker_id for r in rows if r.eval_kind == "held_out_speaker"}
    train_speakers = {r.speaker_id for r in rows if r.split == "train"}
    assert held and not held & train_speakers
    assert any(r.eval_kind == "held_out_utterance" for r in rows)
    for r in rows:
        anchor = (bundle / r.ref_audio).resolve()
        assert anchor.is_relative_to(bundle.resolve()) and anchor.is_file()
        codes = np.load(bundle / r.codes)
        assert codes.shape == (r.frames, 16)
    assert len(verify_bundle(bundle)) == 64


@pytest.mark.parametrize("damage", ["change", "remove", "add"])
def test_verify_names_what_changed(demo_root: Path, tmp_path: Path, damage: str) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(demo_root / "bundle", copy)
    for p in [copy, *copy.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    target = copy / "codes" / "demo" / "astrid-000.npy"
    if damage == "change":
        data = bytearray(target.read_bytes())
        data[-1] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "remove":
        target.unlink()
    else:
        (copy / "stray.txt").write_text("x")
    expected = {"change": "changed file codes/demo/astrid-000.npy", "remove": "missing file codes/demo/astrid-000.npy",
                "add": "extra file stray.txt"}[damage]
    with pytest.raises(BundleError, match=expected):
        verify_bundle(copy)
