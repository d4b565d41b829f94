"""The `recordings` source on long recordings made of espeak-ng speech: cuts in pauses, rejects by reason,
transcripts given or heard (the tiny random Whisper as the ASR judge), a floor on Whisper's confidence, and
a window stopped inside a recording that resumes without slicing or transcribing anything twice."""

from __future__ import annotations

import math
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from qwen_train.gate.tiny_whisper import build_tiny_whisper
from qwen_train.prepare import recording_plan, recordings
from qwen_train.prepare.recording_plan import PlanStore
from qwen_train.prepare.records import Processed
from qwen_train.prepare.slicing import CONTEXT_S
from qwen_train.prepare.spec import PrepareSpec, SourceSpec
from qwen_train.prepare.transcribe import TranscriptFile
from tests.conftest import MakeDir
from tests.layouts_recordings import Recorded, make_recordings
from tests.prepare_layouts import speak_clips
from tests.prepare_window import run_once, run_whole, window_spec

Folder = tuple[Path, dict[str, Recorded]]
Whole = tuple[dict[str, Processed], PrepareSpec]
_SPAN = re.compile(r" (\d+\.\d+)-(\d+\.\d+) s: ")


@pytest.fixture(scope="module")
def folder(module_dir: MakeDir) -> Folder:
    root = module_dir("recordings")
    clips = speak_clips(root / "clips", per_speaker=4)
    return root / "rec", make_recordings(root / "rec", clips)


@pytest.fixture(scope="module")
def whisper(module_dir: MakeDir) -> Iterator[Path]:
    """The tiny Whisper, decoded on one torch thread: on a loaded two-core machine two threads made its
    128-step greedy decode ten times slower, spinning on each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield build_tiny_whisper(module_dir("asr") / "tiny-sv-whisper")
    finally:
        torch.set_num_threads(threads)


def source(folder: Folder, whisper: Path | None, **over: Any) -> SourceSpec:
    return SourceSpec(kind="recordings", path=str(folder[0]), asr=None if whisper is None else str(whisper), **over)


@pytest.fixture(scope="module")
def whole(module_dir: MakeDir, folder: Folder, whisper: Path) -> Whole:
    """Every row in one window, Whisper's transcripts kept whatever their confidence (floor 0)."""
    return run_whole(module_dir("whole"), source(folder, whisper, min_asr_confidence=0.0))


def rows_of(entries: dict[str, Processed], rel: str) -> list[Processed]:
    return [e for key, e in entries.items() if key.startswith(rel + "#")]


def test_slices_fall_in_pauses_within_the_limits(whole: Whole, folder: Folder) -> None:
    """Every cut lies outside every clip's speech and every noise, music or overlap; each clip is one slice,
    with its context; the 44.1 kHz stereo FLAC reads like the 16 kHz WAV."""
    entries, spec = whole
    for name in ("anna", "bo"):
        rec = folder[1][name]
        speech = rec.speech()
        kept = [e for e in rows_of(entries, rec.rel) if e.reason is None]
        held: Counter[int] = Counter()
        for e in kept:
            start, end = float(e.meta["start_s"]), float(e.meta["end_s"])
            assert e.speaker == name and e.rate_in == rec.rate and e.meta["recording"] == rec.rel
            assert spec.limits.min_duration_s <= e.duration_s <= spec.limits.max_duration_s
            assert abs(e.duration_s - (end - start)) < 0.01
            for s in (s for s in rec.stretches if s.kind != "silence"):  # a silence is a pause to cut in
                assert not s.start_s < start < s.end_s and not s.start_s < end < s.end_s, (e.orig_id, s)
            inside = [i for i, s in enumerate(speech) if start <= s.start_s and s.end_s <= end]
            assert len(inside) == 1, (e.orig_id, start, end)
            clip = speech[inside[0]]
            assert clip.start_s - start <= CONTEXT_S + 0.15 and end - clip.end_s <= CONTEXT_S + 0.15
            held[inside[0]] += 1
        assert sorted(held) == list(range(len(speech))) and set(held.values()) == {1}


def test_noise_music_a_long_silence_and_two_voices_are_rejected_by_reason(whole: Whole, folder: Folder) -> None:
    rec = folder[1]["anna"]
    rejects = {e.reason: e for e in rows_of(whole[0], rec.rel) if e.reason is not None}
    assert set(rejects) == {"noise", "music", "long_silence", "overlapping_speech"}
    for reason, kind in (("noise", "noise"), ("music", "music"), ("long_silence", "silence"),
                         ("overlapping_speech", "overlap")):
        match = _SPAN.search(rejects[reason].detail)
        assert match is not None, rejects[reason].detail
        start, end, truth = float(match[1]), float(match[2]), rec.of(kind)
        shared = min(end, truth.end_s) - max(start, truth.start_s)
        assert shared >= 0.8 * (truth.end_s - truth.start_s) - CONTEXT_S, (reason, start, end, truth)
        assert start >= truth.start_s - 0.5 and end <= truth.end_s + 0.5, (reason, start, end, truth)
    assert "held notes" in rejects["music"].detail and "no held notes" in rejects["noise"].detail
    assert "two registers" in rejects["overlapping_speech"].detail


def test_given_transcripts_are_used_as_given(whole: Whole, folder: Folder) -> None:
    """A .txt is the whole file's text, trimmed to its speech; SRT and VTT cues decide the cuts and the text."""
    entries = whole[0]
    for name, kind in (("cia", "txt"), ("dan", "srt"), ("eva", "vtt")):
        rec = folder[1][name]
        rows = rows_of(entries, rec.rel)
        assert len(rows) == len(rec.speech()), name
        for e, truth in zip(rows, rec.speech(), strict=True):
            assert e.reason is None, e.detail
            assert truth.clip is not None and e.text == truth.clip.text and e.meta["transcript"] == kind
            assert "asr_confidence" not in e.meta and e.rate_in == rec.rate and e.speaker == name
            start, end = float(e.meta["start_s"]), float(e.meta["end_s"])
            assert truth.start_s - CONTEXT_S - 0.1 <= start <= truth.start_s, (name, start, truth)
            assert truth.end_s <= end <= truth.end_s + CONTEXT_S + 0.1, (name, end, truth)


def test_whisper_transcribes_the_rest_with_a_confidence_each(whole: Whole, folder: Folder) -> None:
    entries, spec = whole
    store = PlanStore(Path(spec.work_dir or ""), "recordings")
    for name in ("anna", "bo"):
        rec = folder[1][name]
        heard = store.transcripts(rec.rel).done
        kept = [e for e in rows_of(entries, rec.rel) if e.reason is None]
        assert len(heard) == len(kept) > 0
        for e in kept:
            confidence, logprob = float(e.meta["asr_confidence"]), float(e.meta["asr_avg_logprob"])
            assert e.meta["transcript"] == "asr" and 0.0 < confidence < 1.0
            assert abs(confidence - math.exp(logprob)) < 1e-3
            k = int(e.orig_id.rsplit("#", 1)[1])
            assert e.text == heard[k].text and e.text.isprintable() and e.text


def _fail(*_: object, **__: object) -> None:
    raise AssertionError("planned or transcribed again")


def test_the_confidence_floor_drops_what_whisper_was_unsure_of(tmp_path: Path, whole: Whole, folder: Folder,
                                                                whisper: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default floor over the same plans and transcripts: the tiny random Whisper's slices go, saying
    their confidence; nothing is scanned or transcribed again, since the work dir already holds it."""
    shutil.copytree(Path(whole[1].work_dir or "") / "recordings", tmp_path / "work" / "recordings")
    monkeypatch.setattr(recording_plan, "scan_file", _fail)
    monkeypatch.setattr(recordings, "WhisperTranscriber", _fail)
    floored = run_whole(tmp_path, source(folder, whisper))[0]
    assert floored.keys() == whole[0].keys()
    for key, e in floored.items():
        was = whole[0][key]
        if key.startswith(("anna/", "bo/")) and was.reason is None:
            assert e.reason == "low_confidence", key
            assert f"ASR confidence {float(was.meta['asr_confidence']):.3f} is under min_asr_confidence 0.37" \
                in e.detail
        else:
            assert e == was, key


def _spy(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, log: list[str],
         what: Callable[..., str]) -> None:
    real = getattr(owner, name)

    def spy(*args: Any, **kwargs: Any) -> Any:
        log.append(what(*args))
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, spy)


def test_a_window_stopped_inside_a_recording_resumes_where_it_stopped(
        tmp_path: Path, whole: Whole, folder: Folder, whisper: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped after 3 of anna/talk.wav's 9 rows; the next window neither scans nor transcribes that file
    again, and the journal comes out equal to the uninterrupted one's, line for line."""
    spec = window_spec(tmp_path, source(folder, whisper, min_asr_confidence=0.0), max_rows=3)
    first, journaled = run_once(spec)
    assert not first.complete and [e.orig_id for e in journaled] == [f"anna/talk.wav#000{k}" for k in range(3)]
    scanned: list[str] = []
    heard: list[str] = []
    _spy(monkeypatch, recording_plan, "scan_file", scanned, lambda path, *_: Path(path).name)
    _spy(monkeypatch, TranscriptFile, "add", heard, lambda file, *_: file.path.name)
    result, journaled = run_once(msgspec.structs.replace(spec, max_rows=None))
    assert result.complete
    assert "talk.wav" not in scanned and scanned == ["reading.flac", "clip.wav", "show.ogg", "lecture.wav"]
    anna = PlanStore(Path(spec.work_dir or ""), "recordings").transcripts("anna/talk.wav").path.name
    assert anna not in heard and len(heard) == 1  # bo's one batch, and nothing of anna's
    assert journaled == list(whole[0].values())
