"""What a stretch of a long recording is: speech, a pause, a long silence, noise, music, or two voices at once.

From one scan (Silero's speech probability and the acoustic facts per 32 ms chunk, scan.py):

* speech: Silero's probability with Silero's own hysteresis (speech from 0.5, until it falls under 0.35),
  runs under MIN_SPEECH_S dropped;
* the non-speech between is a pause when it is quiet (more than SPEECH_RANGE_DB under the recording's
  speech level) and short. It is a row of its own, rejected, when it is
  - `long_silence`: LONG_SILENCE_S or more of quiet;
  - `music`: MIN_EVENT_S or more of loud sound in which held notes (the same spectral peak for 0.42 s,
    acoustics.sustained) fill MUSIC_SHARE of the chunks;
  - `noise`: any other loud stretch that long (traffic, applause, hiss, a fan, a room full of chatter);
* what the VAD (or a user's cue) calls speech is still rejected as
  - `music` when held notes fill SPEECH_MUSIC_SHARE of its loud chunks: singing, or a music bed louder
    than the voice. Speech over quiet music keeps its slices, and a fast melody that holds no note for
    0.4 s is not caught (when the VAD calls it non-speech it is still `noise`);
  - `overlapping_speech` when its pitch track sits in two registers at least REGISTER_OCTAVES apart, the
    lesser holding REGISTER_SHARE of the voiced chunks (acoustics.two_registers): two voices at once, or a
    second speaker in the same slice. Two voices in one register (two women, or two men, at close
    pitches) pass, and whispered overlap has no pitch to split; a speaker who jumps an octave into
    falsetto for a fifth of a slice would be taken for two. The ASR confidence floor (transcribe.py) is
    the second net: Whisper's confidence drops on overlapped talk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qwen_train.prepare.acoustics import sustained, two_registers
from qwen_train.prepare.records import RejectReason
from qwen_train.prepare.scan import Scan
from qwen_train.prepare.vad import CHUNK_S

SPEECH_ON, SPEECH_OFF = 0.5, 0.35  # Silero's defaults: speech from 0.5, until it falls under 0.35
MIN_SPEECH_S = 0.25
LONG_SILENCE_S = 3.0
MIN_EVENT_S = 1.0
SPEECH_RANGE_DB = 20.0  # non-speech this far under the speech level is quiet
BRIDGE_S = 0.25  # quiet dips shorter than this inside a loud stretch do not break it (music decays, noise bursts)
NOTE_CHUNKS = 13  # a held note: the same peak for 0.42 s
MUSIC_SHARE = 0.3
SPEECH_MUSIC_SHARE = 0.5
REGISTER_OCTAVES = 0.8
REGISTER_SHARE = 0.15
REGISTER_SCORE = 6.0  # separation of the two registers, in pooled standard deviations


@dataclass(frozen=True)
class Span:
    """Chunks [a, b); `reason` None for speech to keep."""

    a: int
    b: int
    reason: RejectReason | None = None
    detail: str = ""
    text: str | None = None


def chunks_of(seconds: float) -> int:
    return max(1, round(seconds / CHUNK_S))


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[a, b) of every run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def speech_mask(prob: np.ndarray) -> np.ndarray:
    """Silero's hysteresis, then runs shorter than MIN_SPEECH_S dropped."""
    mask = np.zeros(len(prob), dtype=bool)
    on = False
    for i, p in enumerate(prob):
        on = p >= SPEECH_ON or (on and p >= SPEECH_OFF)
        mask[i] = on
    for a, b in runs(mask):
        if b - a < chunks_of(MIN_SPEECH_S):
            mask[a:b] = False
    return mask


def speech_level(scan: Scan, mask: np.ndarray) -> float:
    """The recording's speech level (median dB of its speech chunks); the loudest chunks' when none."""
    level = scan.chunks.level_db
    if mask.any():
        return float(np.median(level[mask]))
    return float(np.percentile(level, 90)) if len(level) else -120.0


def bridge(mask: np.ndarray, gap: int) -> np.ndarray:
    """`mask` with False runs shorter than `gap` between two True runs filled in."""
    out = mask.copy()
    spans = runs(mask)
    for (_, b), (a, _) in zip(spans, spans[1:], strict=False):
        if a - b < gap:
            out[b:a] = True
    return out


def event(scan: Scan, a: int, b: int) -> tuple[RejectReason, str]:
    """Music or noise, for a loud non-speech stretch."""
    held = float(sustained(scan.chunks.peak_bin[a:b], NOTE_CHUNKS).mean()) if b > a else 0.0
    level = float(np.median(scan.chunks.level_db[a:b]))
    what = f"{(b - a) * CHUNK_S:.1f} s of sound the VAD does not call speech, at {level:.0f} dBFS"
    if held >= MUSIC_SHARE:
        return "music", f"{what}: held notes in {held:.0%} of it"
    return "noise", f"{what}, no held notes: noise"


def gap_spans(scan: Scan, a: int, b: int, loud_db: float) -> list[Span]:
    """The rows a non-speech stretch [a, b) makes: loud events and long quiet, each a reject."""
    level = scan.chunks.level_db[a:b]
    loud = bridge(level >= loud_db, chunks_of(BRIDGE_S))
    out: list[Span] = []
    for x, y in runs(loud):
        if y - x >= chunks_of(MIN_EVENT_S):
            out.append(Span(a + x, a + y, *event(scan, a + x, a + y)))
    taken = np.zeros(b - a, dtype=bool)
    for s in out:
        taken[s.a - a:s.b - a] = True
    for x, y in runs(~taken):
        if y - x >= chunks_of(LONG_SILENCE_S):
            out.append(Span(a + x, a + y, "long_silence",
                            f"{(y - x) * CHUNK_S:.1f} s without speech (quiet: under {loud_db:.0f} dBFS)"))
    return sorted(out, key=lambda s: s.a)


def judge(scan: Scan, a: int, b: int) -> tuple[RejectReason, str] | None:
    """Music or two voices in what the VAD (or a cue) calls speech; None when it is one voice talking."""
    level = scan.chunks.level_db[a:b]
    if b <= a or not len(level):
        return None
    loud = level >= float(level.max()) - SPEECH_RANGE_DB
    held = sustained(scan.chunks.peak_bin[a:b], NOTE_CHUNKS)[loud]
    if held.size and float(held.mean()) >= SPEECH_MUSIC_SHARE:
        return "music", f"held notes in {float(held.mean()):.0%} of its loud chunks: singing or music over the voice"
    low, high, share, score = two_registers(scan.chunks.log_f0[a:b], REGISTER_SHARE)
    if low > 0 and np.log2(high / low) >= REGISTER_OCTAVES and score >= REGISTER_SCORE:
        return "overlapping_speech", (f"the pitch sits in two registers, {low:.0f} Hz and {high:.0f} Hz "
                                      f"({np.log2(high / low):.1f} octaves apart, the lesser in {share:.0%} of "
                                      "voiced chunks): two voices at once, or a second speaker")
    return None
