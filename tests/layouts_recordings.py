"""A folder of long recordings made from espeak-ng clips, with every stretch's true place written down.

Each recording is clips joined by pauses, over a faint noise floor (a room, not digital silence), with
stretches a slicer must refuse: white noise, a melody of held notes, a long silence, two voices at once.
The builder returns, per file, where each clip's speech really is (its samples above -40 dBFS) and where
each refused stretch is, so a test can check that every cut falls in a pause and every reject is the
stretch it names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from tests.prepare_layouts import Clip

RATE = 16000
PAUSE_S = 0.9
FLOOR = 0.0005  # -66 dBFS of hiss under everything


@dataclass
class Stretch:
    kind: str  # speech, noise, music, silence, overlap
    start_s: float
    end_s: float
    clip: Clip | None = None


@dataclass
class Recorded:
    rel: str
    speaker: str
    rate: int
    stretches: list[Stretch] = field(default_factory=list)

    def speech(self) -> list[Stretch]:
        return [s for s in self.stretches if s.kind == "speech"]

    def of(self, kind: str) -> Stretch:
        return next(s for s in self.stretches if s.kind == kind)


def audible(samples: np.ndarray) -> tuple[int, int]:
    """First and last sample above -40 dBFS: where a clip's speech is, inside espeak-ng's own silence."""
    loud = np.flatnonzero(np.abs(samples) > 0.01)
    return int(loud[0]), int(loud[-1]) + 1


def clip_audio(clip: Clip) -> np.ndarray:
    return clip.samples().astype(np.float32) / 32768.0


def noise(seconds: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * RATE)) * 0.05).astype(np.float32)


def melody(notes: int = 6, note_s: float = 0.6) -> np.ndarray:
    """Held notes with four harmonics each, a soft attack and release: music to the ear, not speech."""
    t = np.arange(int(note_s * RATE)) / RATE
    envelope = np.minimum(1.0, np.minimum(t / 0.03, (note_s - t) / 0.05))
    tones = [sum(0.12 / h * np.sin(2 * np.pi * f * h * t) for h in range(1, 5)) * envelope
             for f in (262, 330, 392, 523, 392, 330, 294, 262)[:notes]]
    return np.concatenate(tones).astype(np.float32)


class Composer:
    """Appends stretches to one 16 kHz recording, remembering where each one's content really is."""

    def __init__(self, rel: str, speaker: str) -> None:
        self.parts: list[np.ndarray] = []
        self.at = 0
        self.record = Recorded(rel, speaker, RATE)

    def add(self, kind: str, audio: np.ndarray, clip: Clip | None = None, span: tuple[int, int] | None = None) -> None:
        a, b = span or (0, len(audio))
        if kind != "pause":
            self.record.stretches.append(Stretch(kind, (self.at + a) / RATE, (self.at + b) / RATE, clip))
        self.parts.append(audio)
        self.at += len(audio)

    def speech(self, clip: Clip) -> None:
        audio = clip_audio(clip)
        self.add("speech", audio, clip, audible(audio))

    def pause(self, seconds: float = PAUSE_S) -> None:
        self.add("pause", np.zeros(int(seconds * RATE), np.float32))

    def signal(self) -> np.ndarray:
        audio = np.concatenate(self.parts)
        return audio + np.random.default_rng(len(audio)).standard_normal(len(audio)).astype(np.float32) * FLOOR


def overlapped(a: Clip, b: Clip) -> np.ndarray:
    x, y = clip_audio(a), clip_audio(b)
    out = np.zeros(max(len(x), len(y)), np.float32)
    out[: len(x)] += x
    out[: len(y)] += y
    return out


def talk_with_events(root: Path, clips: list[Clip], other: Clip) -> Recorded:
    """anna/talk.wav, 16 kHz mono: speech, noise, speech, music, speech, a long silence, two voices, speech."""
    c = Composer("anna/talk.wav", "anna")
    c.pause(0.5)
    c.speech(clips[0])
    c.pause()
    c.add("noise", noise(2.5, 1))
    c.pause()
    c.speech(clips[1])
    c.pause()
    c.add("music", melody())
    c.pause()
    c.speech(clips[2])
    c.add("silence", np.zeros(5 * RATE, np.float32))
    c.speech(clips[3])
    c.pause()
    mix = overlapped(clips[0], other)
    c.add("overlap", mix, None, audible(mix))
    c.pause()
    c.speech(clips[1])
    c.pause(0.6)
    write(root, c, RATE, 1, "WAV")
    return c.record


def reading(root: Path, clips: list[Clip], rel: str, rate: int, channels: int, fmt: str) -> Recorded:
    """Clips read one after the other with pauses; written at `rate` with `channels` in `fmt`."""
    c = Composer(rel, rel.split("/")[0])
    c.pause(0.4)
    for clip in clips:
        c.speech(clip)
        c.pause()
    write(root, c, rate, channels, fmt)
    c.record.rate = rate
    return c.record


def write(root: Path, c: Composer, rate: int, channels: int, fmt: str) -> None:
    audio = c.signal()
    if rate != RATE:
        audio = soxr.resample(audio, RATE, rate).astype(np.float32)
    if channels == 2:
        audio = np.stack([audio, audio * 0.8], axis=1)
    path = root / c.record.rel
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, rate, format=fmt, subtype="VORBIS" if fmt == "OGG" else "PCM_16")


def stamp(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


def srt(record: Recorded) -> str:
    """One cue per clip, timed to its speech, with a tag the parser must strip."""
    blocks = [f"{i}\n{stamp(s.start_s, ',')} --> {stamp(s.end_s, ',')}\n<i>{s.clip.text}</i>\n"
              for i, s in enumerate(record.speech(), 1) if s.clip is not None]
    return "\n".join(blocks)


def vtt(record: Recorded) -> str:
    blocks = [f"c{i}\n{stamp(s.start_s, '.')} --> {stamp(s.end_s, '.')} align:start\n"
              f"<v {record.speaker}>{s.clip.text}\n" for i, s in enumerate(record.speech(), 1) if s.clip is not None]
    return "WEBVTT\n\nNOTE made by the tests\n\n" + "\n".join(blocks)


def make_recordings(root: Path, clips: list[Clip]) -> dict[str, Recorded]:
    """anna: events, for Whisper; bo: 44.1 kHz stereo FLAC, for Whisper; cia: one clip and a .txt;
    dan: OGG with an SRT; eva: WAV with a WebVTT."""
    by = {spk: [c for c in clips if c.speaker == spk] for spk in ("anna", "bo", "cia", "dan", "eva")}
    out = {"anna": talk_with_events(root, by["anna"], by["bo"][0]),
           "bo": reading(root, by["bo"][:3], "bo/reading.flac", 44100, 2, "FLAC"),
           "cia": reading(root, by["cia"][:1], "cia/clip.wav", RATE, 1, "WAV"),
           "dan": reading(root, by["dan"][:2], "dan/show.ogg", 48000, 1, "OGG"),
           "eva": reading(root, by["eva"][:2], "eva/lecture.wav", 22050, 1, "WAV")}
    (root / "cia" / "clip.txt").write_text(by["cia"][0].text + "\n", encoding="utf-8")
    (root / "dan" / "show.srt").write_text(srt(out["dan"]), encoding="utf-8")
    (root / "eva" / "lecture.vtt").write_text(vtt(out["eva"]), encoding="utf-8")
    return out
