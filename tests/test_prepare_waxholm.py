"""The Waxholm importer on real espeak-ng speech: noise markers out of the text and counted, mostly-noise rows
dropped by the source's ceiling, `.wav` copies staged beside the labels, Snack's CRLF `.smp` headers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from qwen_train.prepare import waxholm
from qwen_train.prepare.spec import SourceSpec
from qwen_train.prepare.waxholm import parse_smp_header, read_smp
from qwen_train.prepare.waxholm_labels import parse_mix, strip_markers
from qwen_train.prepare.window import count_rows
from tests.conftest import MakeDir
from tests.layouts_waxholm import make_staged, mix_label, snack_smp_bytes, spoken, stem_of, write_utterance
from tests.prepare_layouts import Clip, iso646, speak_clips
from tests.prepare_window import run_whole, window_spec


@pytest.fixture(scope="module")
def clips(module_dir: MakeDir) -> list[Clip]:
    return speak_clips(module_dir("clips"), per_speaker=2)


def _source(root: Path, max_noise_ratio: float | None = None) -> SourceSpec:
    return SourceSpec(kind="waxholm", path=str(root), role="benchmark", max_noise_ratio=max_noise_ratio)


def _duration(clip: Clip) -> float:
    return len(clip.samples()) / 16000


def test_labels_of_the_corpus_lose_their_markers_and_keep_their_count() -> None:
    """The transcripts quoted from the corpus, and markers with punctuation clinging to them."""
    label = parse_mix("CORRECTED: OK\nTEXT:\nXsmackX till vaxholm .\nJ'A:G\n")
    assert label is not None and (label.text, label.markers, label.words) == ("till vaxholm.", 1, 2)
    assert label.meta() == {"noise_markers": 1, "noise_ratio": 0.333}
    label = parse_mix("TEXT:\nXsmackX vilka b}tar g}r till vaxholm XutandX .\n")
    assert label is not None and label.text == "vilka båtar går till vaxholm." and label.markers == 2
    assert label.meta() == {"noise_markers": 2, "noise_ratio": round(2 / 7, 3)}
    label = parse_mix("TEXT: XinandX ja , XtvekX tack XutandX.\n")  # on the TEXT: line itself, a marker before '.'
    assert label is not None and (label.text, label.markers, label.words) == ("ja, tack.", 3, 2)
    assert parse_mix("TEXT:\nhej p} dig .\n") == strip_markers("hej på dig .")
    assert parse_mix("TEXT:\nXsmackX .\n") == strip_markers("XsmackX .")  # all noise: ratio 1
    assert strip_markers("XsmackX XutandX .").noise_ratio == 1.0 and strip_markers("").noise_ratio == 0.0
    assert parse_mix("no text line\n") is None


def test_words_that_merely_start_and_end_with_a_capital_x_are_kept() -> None:
    label = strip_markers("Xerxes köpte XXL och XX X XSMACKX XÅX XsmackXen XsmackX .")
    assert label.text == "Xerxes köpte XXL och XX X XSMACKX XÅX XsmackXen."
    assert (label.markers, label.words) == (1, 9)


def test_marker_laden_labels_import_stripped_with_the_count_in_meta(tmp_path: Path, clips: list[Clip]) -> None:
    labels = make_staged(tmp_path / "wax", clips, "smp")
    clip = clips[6]  # a word the marker rule must not take, through the whole window
    body, end = clip.text[:-1], clip.text[-1]
    write_utterance(tmp_path / "wax", "fp2001.3.00", clip.samples(), f"XsmackX {iso646(body)} Xerxes XXL {end}")
    entries = run_whole(tmp_path, _source(tmp_path / "wax"))[0]
    assert "XsmackX" in labels["fp2001.1.03"] and "XutandX" in labels["fp2001.1.03"]
    for i, clip in enumerate(clips[:6]):
        e = entries[stem_of(i)]
        assert e.reason is None, e.detail
        assert e.text == clip.text and "X" not in e.text
        assert e.speaker == stem_of(i).split(".")[0] and abs(e.duration_s - _duration(clip)) < 0.01
        markers, words = i % 2 + (i % 3 == 0), len(clip.text.split())
        assert e.meta == {"noise_markers": markers, "noise_ratio": round(markers / (markers + words), 3)}, i
    assert entries["fp2001.1.03"].meta["noise_markers"] == 2
    kept = entries["fp2001.3.00"]
    assert kept.reason is None and kept.text == f"{body} Xerxes XXL{end}"
    assert kept.meta == {"noise_markers": 1, "noise_ratio": round(1 / (len(body.split()) + 3), 3)}


def test_a_mostly_noise_row_is_dropped_by_the_ceiling(tmp_path: Path, clips: list[Clip]) -> None:
    """Default 0.5: a row over it is `mostly_noise`, one at it is kept; 1 keeps every row, 0 any marker drops it."""
    root = tmp_path / "wax"
    noisy, even, clean = clips[6], clips[7], clips[8]
    words = len(noisy.text.split())
    write_utterance(root, "fp2001.1.00", noisy.samples(), spoken(noisy, before=words, after=1))
    write_utterance(root, "fp2001.1.01", even.samples(), spoken(even, before=len(even.text.split())))
    write_utterance(root, "fp2001.1.02", clean.samples(), spoken(clean))
    write_utterance(root, "fp2001.1.03", clean.samples(), "XsmackX XinandX .")  # breath and nothing said
    got = run_whole(tmp_path / "default", _source(root))[0]
    assert {k: e.reason for k, e in got.items()} == {
        "fp2001.1.00": "mostly_noise", "fp2001.1.01": None, "fp2001.1.02": None, "fp2001.1.03": "mostly_noise"}
    detail = got["fp2001.1.00"].detail
    assert "fp2001/fp2001.1.00.smp.mix" in detail and f"{words + 1} noise markers" in detail
    assert "max_noise_ratio 0.5" in detail
    assert got["fp2001.1.01"].meta["noise_ratio"] == 0.5 and got["fp2001.1.01"].text == even.text

    kept = run_whole(tmp_path / "all", _source(root, max_noise_ratio=1.0))[0]
    assert kept["fp2001.1.00"].reason is None and kept["fp2001.1.00"].text == noisy.text
    assert kept["fp2001.1.00"].meta["noise_markers"] == words + 1
    assert float(kept["fp2001.1.00"].meta["noise_ratio"]) > 0.5
    assert kept["fp2001.1.03"].reason == "empty_text"  # past the importer, nothing is left to say

    strict = run_whole(tmp_path / "none", _source(root, max_noise_ratio=0.0))[0]
    assert [strict[f"fp2001.1.0{i}"].reason for i in range(4)] == ["mostly_noise", "mostly_noise", None,
                                                                  "mostly_noise"]
    assert "max_noise_ratio 0" in strict["fp2001.1.01"].detail


def test_wav_staging_imports_as_the_smp_layout_of_the_same_clips(tmp_path: Path, clips: list[Clip]) -> None:
    smp, wav = tmp_path / "smp", tmp_path / "wav"
    assert make_staged(smp, clips, "smp") == make_staged(wav, clips, "wav")
    names = {p.name for p in wav.rglob("*") if p.is_file()}
    assert "fp2001.1.00.wav" in names and "fp2002.1.01.smp.wav" in names and not any(n.endswith(".smp") for n in names)
    for root in (smp, wav):  # an .smp wins over a .wav of the same stem (here, of other speech)
        write_utterance(root, "fp2003.2.00", clips[6].samples(), spoken(clips[6]))
    write_utterance(wav, "fp2003.2.00", clips[9].samples(), None, "wav")
    write_utterance(wav, "fp2003.9.00", clips[7].samples(), None, "wav")  # no label
    write_utterance(wav, "fp2003.9.01", clips[7].samples(), None, "smp.wav")
    (wav / "fp2003" / "fp2003.9.01.smp.mix").write_text("CORRECTED: no text line\n", encoding="latin-1")

    a = run_whole(tmp_path / "a", _source(smp))[0]
    b = run_whole(tmp_path / "b", _source(wav))[0]
    assert b.pop("fp2003.9.00").reason == "missing_label"
    assert b.pop("fp2003.9.01").reason == "bad_metadata"
    assert list(a) == list(b) and len(a) == 7  # same rows, same order (the journal's row numbers)
    for key, x in a.items():
        y = b[key]
        assert x.reason is None and y.reason is None, (x.detail, y.detail)
        assert (y.orig_id, y.speaker, y.text, y.meta, y.rate_in) == (x.orig_id, x.speaker, x.text, x.meta, 16000)
        assert abs(x.duration_s - y.duration_s) < 0.01
        assert x.audio_sha == y.audio_sha  # the same samples, whichever file held them
    assert abs(b["fp2003.2.00"].duration_s - _duration(clips[6])) < 0.01


def test_staged_wavs_keep_the_corpus_safety_rules(tmp_path: Path, clips: list[Clip]) -> None:
    """A .wav leading out of the root, a FIFO named as a .wav or as its label, a .wav cut short."""
    root, outside = tmp_path / "wax", tmp_path / "elsewhere"
    outside.mkdir()
    good = write_utterance(root, "fp2001.1.00", clips[0].samples(), spoken(clips[0]), "wav")
    shutil.copyfile(good, outside / "x.wav")
    d = good.parent
    (d / "fp2001.1.01.wav").symlink_to(outside / "x.wav")
    (d / "fp2001.1.01.smp.mix").write_text(mix_label("fp2001.1.01", spoken(clips[0])), encoding="latin-1")
    os.mkfifo(d / "fp2001.1.02.smp.wav")
    (d / "fp2001.1.02.smp.mix").write_text(mix_label("fp2001.1.02", spoken(clips[0])), encoding="latin-1")
    write_utterance(root, "fp2001.1.03", clips[0].samples(), None, "wav")
    os.mkfifo(d / "fp2001.1.03.smp.mix")
    whole = good.read_bytes()
    (d / "fp2001.1.04.wav").write_bytes(whole[: len(whole) // 2])
    (d / "fp2001.1.04.smp.mix").write_text(mix_label("fp2001.1.04", spoken(clips[0])), encoding="latin-1")
    got = run_whole(tmp_path, _source(root))[0]
    assert {k: e.reason for k, e in got.items()} == {
        "fp2001.1.00": None, "fp2001.1.01": "path_escape", "fp2001.1.02": "decode_error",
        "fp2001.1.03": "bad_metadata", "fp2001.1.04": "truncated"}
    assert "not a regular file" in got["fp2001.1.02"].detail and "not a regular file" in got["fp2001.1.03"].detail
    assert "elsewhere" in got["fp2001.1.01"].detail


def test_a_root_with_neither_smp_nor_wav_files_is_an_error_naming_it(tmp_path: Path) -> None:
    root = tmp_path / "waxholm"
    (root / "fp2001").mkdir(parents=True)
    (root / "fp2001" / "fp2001.1.00.smp.mix").write_text("TEXT:\nhej\n", encoding="latin-1")
    (root / "README.txt").write_text("KTH Waxholm\n")
    spec = window_spec(tmp_path, _source(root))
    with pytest.raises(FileNotFoundError) as caught:
        count_rows(spec)
    message = str(caught.value)
    assert str(root) in message and "no .smp files and no .wav files" in message
    assert "fpNNNN/fpNNNN.S.UU.smp" in message and ".smp.mix" in message
    with pytest.raises(FileNotFoundError, match="not a directory"):
        waxholm.count(_source(root / "missing"), tmp_path)


def test_a_snack_crlf_header_puts_the_body_at_byte_1024(tmp_path: Path) -> None:
    """Snack writes CRLF lines, `=`, `\\0\\4 ` and NULs to 1024 bytes. The loading script reads such a file with
    soundfile's RAW `start=512`, which counts frames: 512 mono 16-bit frames are byte 1024, where read_smp starts."""
    samples = np.array([0, 1, -2, 32767, -32768, 256, -300, 12345] * 50, dtype=np.int16)
    for msb, endian in (("first", "BIG"), ("last", "LITTLE")):
        path = tmp_path / f"{msb}.smp"
        path.write_bytes(snack_smp_bytes(samples, msb=msb))
        raw = path.read_bytes()
        assert raw[:1024].count(b"\r\n") == 7 and b"\r\n=\r\n\x00\x04 " in raw[:1024] and raw[1000:1024] == bytes(24)
        assert parse_smp_header(raw) == {"file": "samp", "sftot": "16000", "msb": msb, "nchans": "1",
                                         "preemph": "none", "born": "snack"}
        audio, rate = read_smp(path)
        assert rate == 16000 and audio.shape == (len(samples), 1)
        np.testing.assert_array_equal(np.round(audio[:, 0] * 32768).astype(np.int16), samples)
        script, _ = sf.read(str(path), format="RAW", subtype="PCM_16", samplerate=16000, channels=1,
                            endian=endian, start=512, dtype="int16")
        np.testing.assert_array_equal(script, samples)


def test_snack_and_commented_headers_import_alike(tmp_path: Path, clips: list[Clip]) -> None:
    root, clip = tmp_path / "wax", clips[11]
    write_utterance(root, "fp2001.1.00", clip.samples(), spoken(clip, before=1), "snack-smp")
    write_utterance(root, "fp2001.1.01", clip.samples(), spoken(clip, before=1), "smp")
    got = run_whole(tmp_path, _source(root))[0]
    crlf, lf = got["fp2001.1.00"], got["fp2001.1.01"]
    assert crlf.reason is None and lf.reason is None
    assert crlf.audio_sha == lf.audio_sha and abs(crlf.duration_s - _duration(clip)) < 0.01
    assert crlf.text == lf.text == clip.text
    assert crlf.meta == {"noise_markers": 1, "noise_ratio": round(1 / (len(clip.text.split()) + 1), 3)}
