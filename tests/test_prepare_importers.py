"""Each importer on its publisher's layout: good rows kept, corrupt rows rejected with the right reason."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from qwen_train.prepare.process import stored_wav
from qwen_train.prepare.records import Processed
from qwen_train.prepare.spec import PrepareSpec, SourceSpec
from qwen_train.prepare.waxholm import mix_text, read_smp
from qwen_train.prepare.window import audio_root
from tests.conftest import MakeDir
from tests.prepare_layouts import Clip, make_fleurs, make_rixvox, make_upstream, make_waxholm, smp_bytes, speak_clips
from tests.prepare_window import run_whole


@pytest.fixture(scope="module")
def clips(module_dir: MakeDir) -> list[Clip]:
    return speak_clips(module_dir("clips"), per_speaker=2)


def _check(entries: dict[str, Processed], expect: dict[str, str | None], spec: PrepareSpec) -> None:
    got = {k: e.reason for k, e in entries.items()}
    assert got == expect
    for e in entries.values():
        if e.reason is None:
            info = sf.info(str(stored_wav(audio_root(spec), e.audio_sha or "")))
            assert (info.samplerate, info.channels) == (24000, 1)
            assert abs(info.duration - e.duration_s) < 0.01
            assert unicodedata.is_normalized("NFC", e.text)
        else:
            assert e.detail, e


def test_waxholm_smp_big_endian_and_mix_labels(tmp_path: Path, clips: list[Clip]) -> None:
    expect = make_waxholm(tmp_path / "wax", clips)
    entries, spec = run_whole(tmp_path, SourceSpec(kind="waxholm", path=str(tmp_path / "wax"), role="benchmark"))
    _check(entries, expect, spec)
    good = entries["fp2001.1.00"]
    assert good.speaker == "fp2001" and good.text == clips[0].text and any(c in good.text for c in "åäö")
    assert good.rate_in == 16000


def test_smp_reader_decodes_big_endian_exactly(tmp_path: Path) -> None:
    samples = np.array([0, 1, -2, 32767, -32768, 256], dtype=np.int16)
    path = tmp_path / "x.smp"
    path.write_bytes(smp_bytes(samples, rate=16000))
    audio, rate = read_smp(path)
    assert rate == 16000 and audio.shape == (6, 1)
    np.testing.assert_array_equal(np.round(audio[:, 0] * 32768).astype(np.int16), samples)
    assert mix_text("X\nTEXT:\nbr}k med m|ss och {gg .\n") == "bråk med möss och ägg."


def test_fleurs_tsv_with_tar_and_extracted_audio(tmp_path: Path, clips: list[Clip]) -> None:
    expect = make_fleurs(tmp_path / "fleurs", clips)
    entries, spec = run_whole(tmp_path, SourceSpec(kind="fleurs", path=str(tmp_path / "fleurs")))
    _check(entries, expect, spec)
    assert spec.sources[0].resolved_role == "eval"
    assert entries["dev/1000dev"].text == clips[0].text  # raw transcription, cased and punctuated


def test_rixvox_parquet_with_audio_struct_and_speaker_metadata(tmp_path: Path, clips: list[Clip]) -> None:
    expect = make_rixvox(tmp_path / "rix", clips)
    entries, spec = run_whole(tmp_path, SourceSpec(kind="rixvox", path=str(tmp_path / "rix" / "data")))
    _check(entries, expect, spec)
    assert entries["H901-7-0"].speaker == "id-anna"  # the person id, not the display name
    assert spec.sources[0].resolved_role == "train"


def test_upstream_jsonl_nfc_and_missing_reference(tmp_path: Path, clips: list[Clip]) -> None:
    expect = make_upstream(tmp_path / "up", clips[:4])
    jsonl = tmp_path / "up" / "train.jsonl"
    decomposed = jsonl.read_text(encoding="utf-8").replace("å", "a\u030a")
    jsonl.write_text(decomposed, encoding="utf-8")
    entries, spec = run_whole(tmp_path, SourceSpec(kind="upstream_jsonl", path=str(jsonl)))
    _check(entries, expect, spec)
    assert "å" in "".join(e.text for e in entries.values())
