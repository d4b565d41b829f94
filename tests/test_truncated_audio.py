"""Audio cut short is `truncated`, not a good row: real espeak-ng WAVs cut in several places, in each importer kind.

libsndfile decodes a WAV whose data chunk stops early without an error (it shrinks the frame count
to what is there), so every case below decodes to some audio; only the header check tells them apart.
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from qwen_train.prepare.audio import TruncatedAudio, check_wav_complete, decode_bytes
from qwen_train.prepare.journal import Journal
from qwen_train.prepare.records import Processed
from qwen_train.prepare.spec import PrepareSpec, SourceSpec, validate_prepare_spec
from qwen_train.prepare.waxholm import read_smp
from qwen_train.prepare.window import count_rows, run_window
from tests.conftest import MakeDir
from tests.prepare_layouts import iso646, smp_bytes

TEXT = "Hej, det här är ett test av svenskt tal i dag."
HEADER = 44  # espeak-ng and sox write the canonical 44-byte PCM header


@pytest.fixture(scope="module")
def espeak_wav(module_dir: MakeDir) -> bytes:
    """espeak-ng's own 22.05 kHz 16-bit mono WAV (written to a file, so its sizes are real)."""
    path = module_dir("espeak") / "a.wav"
    subprocess.run(["espeak-ng", "-v", "sv+f2", "-w", str(path), TEXT], check=True, capture_output=True)
    return path.read_bytes()


def cuts(wav: bytes) -> dict[str, bytes]:
    data = len(wav) - HEADER
    assert wav[36:40] == b"data" and int.from_bytes(wav[40:44], "little") == data  # the layout the cuts assume
    return {"half": wav[: HEADER + data // 2], "header_only": wav[:HEADER], "one_byte_short": wav[:-1],
            "one_frame_short": wav[:-2], "all_but_ten_ms": wav[: len(wav) - 441]}


def test_each_cut_is_truncated_and_the_whole_file_is_not(espeak_wav: bytes) -> None:
    audio, rate = decode_bytes(espeak_wav)
    assert rate == 22050 and len(audio) == (len(espeak_wav) - HEADER) // 2
    for name, cut in cuts(espeak_wav).items():
        assert len(sf.read(io.BytesIO(cut))[0]) < len(audio), name  # libsndfile alone does not object...
        with pytest.raises(TruncatedAudio, match="cut short") as caught:
            decode_bytes(cut)  # ...the header check does
        promised = (len(espeak_wav) - HEADER) // 2
        assert f"promises {promised} frames" in str(caught.value), name


def test_a_streaming_placeholder_size_promises_nothing() -> None:
    """espeak-ng --stdout cannot seek back, so it writes 0x7ffff000 as the data size: not a truncation."""
    out = subprocess.run(["espeak-ng", "-v", "sv", "--stdout", TEXT], check=True, capture_output=True).stdout
    assert int.from_bytes(out[40:44], "little") == 0x7FFFF000
    check_wav_complete(out)
    assert len(decode_bytes(out)[0]) == (len(out) - HEADER) // 2


def test_a_chunk_after_the_data_and_a_big_endian_rifx_header(espeak_wav: bytes) -> None:
    trailer = b"LIST" + (4).to_bytes(4, "little") + b"INFO"
    riff = len(espeak_wav) - 8 + len(trailer)
    with_list = b"RIFF" + riff.to_bytes(4, "little") + espeak_wav[8:] + trailer
    check_wav_complete(with_list)  # the data chunk is whole; what follows it is not data
    samples = np.frombuffer(espeak_wav[HEADER:], dtype="<i2")
    buf = io.BytesIO()
    sf.write(buf, samples, 22050, format="WAV", subtype="PCM_16", endian="BIG")
    rifx = buf.getvalue()
    assert rifx[:4] == b"RIFX"
    check_wav_complete(rifx)
    with pytest.raises(TruncatedAudio):
        check_wav_complete(rifx[: len(rifx) // 2])


def test_a_cut_flac_is_refused_as_truncated_or_undecodable(espeak_wav: bytes) -> None:
    audio, rate = sf.read(io.BytesIO(espeak_wav), dtype="int16")
    buf = io.BytesIO()
    sf.write(buf, audio, rate, format="FLAC")
    flac = buf.getvalue()
    assert len(decode_bytes(flac)[0]) == len(audio)
    for cut in (flac[: len(flac) // 2], flac[: len(flac) - 7]):
        with pytest.raises((TruncatedAudio, sf.LibsndfileError, RuntimeError)):
            decode_bytes(cut)


def test_an_smp_body_ending_inside_a_sample_is_truncated(tmp_path: Path, espeak_wav: bytes) -> None:
    whole = smp_bytes(np.frombuffer(espeak_wav[HEADER:], dtype="<i2"))
    path = tmp_path / "x.smp"
    path.write_bytes(whole[:-1])
    with pytest.raises(TruncatedAudio, match="ends inside a sample"):
        read_smp(path)
    path.write_bytes(whole)
    assert read_smp(path)[0].shape[0] == (len(espeak_wav) - HEADER) // 2


def _window(tmp: Path, source: SourceSpec) -> dict[str, Processed]:
    spec = validate_prepare_spec(PrepareSpec(name="t", out=str(tmp / "out"), model="unused", sources=[source],
                                             work_dir=str(tmp / "work")))
    journal = Journal(tmp / "work")
    assert run_window(spec, journal, count_rows(spec)).complete
    journal.close()
    return {e.orig_id: e for e in journal.state.entries}


def test_truncated_rows_through_the_importers(tmp_path: Path, espeak_wav: bytes) -> None:
    """Files (upstream JSONL), embedded bytes (RixVox parquet) and .smp (Waxholm): each cut is a `truncated` row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    variants = {"whole": espeak_wav, **cuts(espeak_wav)}
    up = tmp_path / "up"
    up.mkdir()
    lines = []
    for name, data in variants.items():
        (up / f"{name}.wav").write_bytes(data)
        lines.append(json.dumps({"id": name, "audio": f"{name}.wav", "text": TEXT, "speaker": "s"}, ensure_ascii=False))
    (up / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = _window(tmp_path / "w1", SourceSpec(kind="upstream_jsonl", path=str(up / "train.jsonl")))
    expect = {name: None if name == "whole" else "truncated" for name in variants}
    assert {k: e.reason for k, e in rows.items()} == expect
    assert "promises" in rows["half"].detail and rows["whole"].duration_s > 2.0

    shard = tmp_path / "rix" / "data" / "train"
    shard.mkdir(parents=True)
    recs = [{"dokid": "D", "anforande_nummer": 1, "observation_nr": i, "audio": {"bytes": data, "path": None},
             "text": TEXT, "intressent_id": "p1"} for i, data in enumerate(variants.values())]
    pq.write_table(pa.Table.from_pylist(recs), shard / "0000.parquet")
    rows = _window(tmp_path / "w2", SourceSpec(kind="rixvox", path=str(tmp_path / "rix" / "data")))
    assert [e.reason for e in rows.values()] == list(expect.values())

    wax = tmp_path / "wax" / "fp2001"
    wax.mkdir(parents=True)
    body = smp_bytes(np.frombuffer(espeak_wav[HEADER:], dtype="<i2"))
    for i, data in enumerate((body, body[:-1], body[:-3])):
        (wax / f"fp2001.1.0{i}.smp").write_bytes(data)
        (wax / f"fp2001.1.0{i}.smp.mix").write_text(f"TEXT:\n{iso646(TEXT)}\n", encoding="latin-1")
    rows = _window(tmp_path / "w3", SourceSpec(kind="waxholm", path=str(tmp_path / "wax"), role="benchmark"))
    assert [e.reason for e in rows.values()] == [None, "truncated", "truncated"]
