"""A recordings folder's layout and its faults, without Whisper: speakers by folder or speakers.tsv, the
transcript kinds, and each file that cannot be used becoming one row with its reason."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from qwen_train.prepare import recordings
from qwen_train.prepare.recordings import count
from qwen_train.prepare.spec import Limits, SourceSpec
from qwen_train.prepare.timed_text import TimedTextError, parse_cues, read_transcript
from qwen_train.prepare.transcribe import AsrUnavailable
from qwen_train.spec import SpecError
from tests.conftest import MakeDir
from tests.layouts_recordings import Composer
from tests.prepare_layouts import Clip, speak_clips
from tests.prepare_window import run_once, run_whole, window_spec


@pytest.fixture(scope="module")
def clips(module_dir: MakeDir) -> list[Clip]:
    return speak_clips(module_dir("clips"), per_speaker=1)


def _write(root: Path, rel: str, clip: Clip, text: str | None = None, rate: int = 16000) -> Path:
    c = Composer(rel, "x")
    c.pause(0.3)
    c.speech(clip)
    c.pause(0.3)
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = c.signal()
    sf.write(str(path), audio[:: 16000 // rate] if rate < 16000 else audio, rate, subtype="PCM_16")
    if text is not None:
        path.with_suffix(".txt").write_text(text, encoding="utf-8")
    return path


def test_srt_and_vtt_cues_lose_their_markup_and_keep_their_times(tmp_path: Path) -> None:
    srt = "\ufeff1\r\n00:00:01,500 --> 00:00:04,250\r\n<i>Hej på</i> {\\an8}dig,\r\nhur mår du?\r\n\r\n" \
          "2\r\n00:00:05,000 --> 00:00:06,000\r\n<b>Bra.</b>\r\n"
    (tmp_path / "a.srt").write_bytes(srt.encode("utf-8"))
    got = read_transcript(tmp_path / "a.srt")
    assert got.kind == "srt" and [(c.start_s, c.end_s, c.text) for c in got.cues] == [
        (1.5, 4.25, "Hej på dig, hur mår du?"), (5.0, 6.0, "Bra.")]
    vtt = "WEBVTT\n\nNOTE a note\n\nSTYLE\n::cue { color: red }\n\nid-1\n01:02.5 --> 01:04.000 line:0\n" \
          "<v Anna>Tack så mycket.\n\n1:00:00.000 --> 1:00:01.000\nSlut.\n"
    (tmp_path / "b.vtt").write_text(vtt, encoding="utf-8")
    got = read_transcript(tmp_path / "b.vtt")
    assert [(c.start_s, c.end_s, c.text) for c in got.cues] == [(62.5, 64.0, "Tack så mycket."),
                                                                 (3600.0, 3601.0, "Slut.")]
    (tmp_path / "c.txt").write_bytes("Gröna  ängar\nvid sjön.\n".encode("cp1252"))
    assert read_transcript(tmp_path / "c.txt").text == "Gröna ängar vid sjön."
    with pytest.raises(TimedTextError, match="x.srt line 2: '00:00:0x,000' is not a time"):
        parse_cues("1\n00:00:0x,000 --> 00:00:02,000\nHej\n", "x.srt")
    with pytest.raises(TimedTextError, match="ends .* before it starts"):
        parse_cues("1\n00:00:03,000 --> 00:00:02,000\nHej\n", "x.srt")


def test_each_unusable_file_is_one_row_with_its_reason(tmp_path: Path, clips: list[Clip]) -> None:
    root = tmp_path / "rec"
    _write(root, "flat.wav", clips[0], clips[0].text)  # speaker from speakers.tsv
    _write(root, "stray.wav", clips[1], clips[1].text)  # at the root, in no line of it
    (root / "speakers.tsv").write_text("# file\tspeaker\nflat.wav\tfinn\n", encoding="utf-8")
    _write(root, "bo/low.wav", clips[1], clips[1].text, rate=8000)
    whole = _write(root, "bo/cut.wav", clips[1], clips[1].text).read_bytes()
    (root / "bo" / "cut.wav").write_bytes(whole[: len(whole) // 2])
    _write(root, "bo/broken.wav", clips[1])
    (root / "bo" / "broken.srt").write_text("1\n00:00:01,000 --> soon\nHej\n", encoding="utf-8")
    (root / "bo" / "voice.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A ")
    os.mkfifo(root / "bo" / "pipe.wav")
    (root / "bo" / "pipe.txt").write_text("Hej.", encoding="utf-8")
    entries, _ = run_whole(tmp_path, SourceSpec(kind="recordings", path=str(root)))
    reasons = {key.split("#")[0]: (e.reason, e.speaker) for key, e in entries.items()}
    assert reasons == {"bo/broken.wav": ("bad_metadata", ""), "bo/cut.wav": ("truncated", ""),
                       "bo/low.wav": ("sample_rate", ""), "bo/pipe.wav": ("decode_error", ""),
                       "bo/voice.m4a": ("decode_error", ""), "flat.wav": (None, "finn"),
                       "stray.wav": ("bad_metadata", "")}
    assert "broken.srt" in entries["bo/broken.wav#0000"].detail and "'soon' is not a time" in \
        entries["bo/broken.wav#0000"].detail
    assert "ffmpeg -i voice.m4a voice.flac" in entries["bo/voice.m4a#0000"].detail
    assert "speakers.tsv" in entries["stray.wav#0000"].detail
    assert "not a regular file" in entries["bo/pipe.wav#0000"].detail
    assert "8000 Hz is below 16000 Hz" in entries["bo/low.wav#0000"].detail
    assert entries["flat.wav#0000"].text == clips[0].text


def test_a_txt_beside_a_file_longer_than_the_limit_says_what_to_give_instead(tmp_path: Path,
                                                                            clips: list[Clip]) -> None:
    root = tmp_path / "rec"
    c = Composer("anna/long.wav", "anna")
    for clip in clips[:3]:
        c.speech(clip)
        c.pause()
    (root / "anna").mkdir(parents=True)
    sf.write(str(root / "anna" / "long.wav"), c.signal(), 16000, subtype="PCM_16")
    (root / "anna" / "long.txt").write_text(" ".join(clip.text for clip in clips[:3]), encoding="utf-8")
    result, entries = run_once(window_spec(tmp_path, SourceSpec(kind="recordings", path=str(root)),
                                           limits=Limits(max_duration_s=6.0)))
    assert result.complete and [e.reason for e in entries] == ["too_long"]
    assert "a .txt cannot say where to cut; give an .srt or .vtt" in entries[0].detail


def test_the_long_steps_say_how_far_they_are(tmp_path: Path, clips: list[Clip]) -> None:
    """What the VAD pass is doing reaches the caller as text (run.py puts it in the heartbeat)."""
    root = tmp_path / "rec"
    _write(root, "anna/a.wav", clips[0], clips[0].text)
    notes: list[str] = []
    got = list(recordings.rows(SourceSpec(kind="recordings", path=str(root)), tmp_path / "work", show=False,
                               note=notes.append))
    assert len(got) == 1 and notes and notes[-1].startswith("vad anna/a.wav: ") and notes[-1].endswith(" s")


def test_a_folder_that_needs_whisper_and_names_none_is_refused_before_any_work(tmp_path: Path,
                                                                                clips: list[Clip]) -> None:
    root = tmp_path / "rec"
    _write(root, "anna/a.wav", clips[0])
    _write(root, "anna/b.wav", clips[0], clips[0].text)
    src = SourceSpec(kind="recordings", path=str(root))
    with pytest.raises(AsrUnavailable, match=r"anna/a.wav has no transcript beside it .* set `asr`"):
        count(src, tmp_path / "work")
    (root / "cfg").mkdir()
    (root / "cfg" / "config.json").write_text('{"model_type": "wav2vec2"}')
    with pytest.raises(AsrUnavailable, match="not a Whisper model directory"):
        count(SourceSpec(kind="recordings", path=str(root), asr=str(root / "cfg")), tmp_path / "work")
    assert not (tmp_path / "work").exists()
    with pytest.raises(FileNotFoundError, match="holds no audio files"):
        count(SourceSpec(kind="recordings", path=str(root / "cfg")), tmp_path)


def test_recordings_options_belong_to_recordings(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="asr applies to recordings sources only"):
        window_spec(tmp_path, SourceSpec(kind="fleurs", path=".", asr="kb-whisper"))
    with pytest.raises(SpecError, match="min_asr_confidence applies to recordings"):
        window_spec(tmp_path, SourceSpec(kind="rixvox", path=".", min_asr_confidence=0.5))
    with pytest.raises(SpecError, match=r"min_asr_confidence must be in \[0, 1\]"):
        window_spec(tmp_path, SourceSpec(kind="recordings", path=".", min_asr_confidence=1.5))
    spec = window_spec(tmp_path, SourceSpec(kind="recordings", path="."))
    assert spec.sources[0].resolved_role == "train" and spec.sources[0].asr_floor == 0.37


def test_an_mp3_reads_when_libsndfile_can(tmp_path: Path, clips: list[Clip]) -> None:
    """libsndfile 1.1 and later decode MP3; the layout says so by its format table, not by the suffix alone."""
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile has no MP3")
    root = tmp_path / "rec"
    path = root / "anna" / "talk.mp3"
    path.parent.mkdir(parents=True)
    audio = np.concatenate([np.zeros(8000), clips[0].samples() / 32768.0, np.zeros(8000)]).astype(np.float32)
    sf.write(str(path), audio, 16000, format="MP3")
    path.with_suffix(".txt").write_text(clips[0].text, encoding="utf-8")
    entries, _ = run_whole(tmp_path, SourceSpec(kind="recordings", path=str(root)))
    row = entries["anna/talk.mp3#0000"]
    assert row.reason is None and row.text == clips[0].text and row.rate_in == 16000, row.detail
