"""Checks on one row's text and audio; each failure is one named reason.

Why each check exists:
* decode/empty/silent: nothing to learn from, and codes of silence teach the
  model to stall;
* clipping: the codec learns the distortion;
* non-speech ratio: long silences or music beds mis-align text and frames;
* sample rate: below 16 kHz there is no band to resample up to 24 kHz;
* duration: the maximum is a memory heuristic from the spec, not a law;
* characters per second: far off the norm means a bad alignment (RixVox's
  aeneas alignments are the usual culprit), so text and audio disagree;
* text: empty or not Swedish-looking text cannot teach Swedish. Text is NFC
  so å/ä/ö are single code points whatever the source's normalisation.
"""

from __future__ import annotations

import math
import re
import unicodedata

import msgspec
import numpy as np

from qwen_train.prepare.records import RejectReason
from qwen_train.prepare.spec import Limits

FRAME_S = 0.025
HOP_S = 0.010
# A frame counts as speech when it is within this many dB of the loudest frame.
SPEECH_RANGE_DB = 35.0

_SWEDISH_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzåäöéèáàüëïôç")
_SV_WORDS = frozenset({
    "och", "i", "att", "det", "som", "en", "på", "är", "av", "för", "med", "till", "den", "har", "de",
    "inte", "om", "ett", "men", "jag", "vi", "du", "var", "så", "kan", "ska", "vill",
})
_EN_WORDS = frozenset({
    "the", "and", "of", "to", "is", "in", "that", "it", "for", "was", "on", "are", "with", "as", "be",
    "this", "have", "you", "not", "but", "they", "at", "by", "from",
})
_SPACE = re.compile(r"\s+")


class AudioFacts(msgspec.Struct, frozen=True):
    duration_s: float
    speech_s: float
    span_s: float
    non_speech_ratio: float
    peak: float
    clip_fraction: float


class Verdict(msgspec.Struct, frozen=True):
    reason: RejectReason | None
    detail: str = ""


def normalize_text(text: str) -> str:
    """NFC (so 'a' + combining ring becomes 'å'), whitespace collapsed, ends trimmed."""
    return _SPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


def check_text(text: str, limits: Limits) -> Verdict:
    """Empty, or letters outside the Swedish alphabet, or English function words dominate."""
    if not text:
        return Verdict("empty_text", "transcript is empty")
    letters = [c for c in text.lower() if c.isalpha()]
    if not letters:
        return Verdict("empty_text", f"transcript {text!r} has no letters")
    ratio = sum(c in _SWEDISH_LETTERS for c in letters) / len(letters)
    if ratio < limits.min_swedish_letter_ratio:
        return Verdict("not_swedish", f"only {ratio:.0%} of the letters are Swedish-alphabet letters")
    words = re.findall(r"[^\W\d_]+", text.lower())
    if len(words) >= 4:
        sv = sum(w in _SV_WORDS for w in words)
        en = sum(w in _EN_WORDS for w in words)
        if en >= 2 and en > sv:
            return Verdict("not_swedish", f"{en} English function words against {sv} Swedish ones")
    return Verdict(None)


def frame_db(mono: np.ndarray, rate: int) -> np.ndarray:
    """RMS level per 25 ms frame (10 ms hop), in dBFS; O(n) through a running sum of squares."""
    frame = max(1, int(rate * FRAME_S))
    hop = max(1, int(rate * HOP_S))
    if mono.size < frame:
        mono = np.pad(mono, (0, frame - mono.size))
    energy = np.concatenate(([0.0], np.cumsum(np.square(mono, dtype=np.float64))))
    starts = np.arange(0, mono.size - frame + 1, hop)
    mean_sq = np.maximum(energy[starts + frame] - energy[starts], 0.0) / frame
    result: np.ndarray = 10.0 * np.log10(mean_sq + 1e-20)
    return result


def audio_facts(mono: np.ndarray, rate: int, limits: Limits) -> AudioFacts:
    duration = mono.size / rate if rate else 0.0
    magnitude = np.abs(mono)
    peak = float(magnitude.max()) if mono.size else 0.0
    clip = float(np.count_nonzero(magnitude >= limits.clip_level) / mono.size) if mono.size else 0.0
    db = frame_db(mono, rate)
    floor = max(float(db.max()) - SPEECH_RANGE_DB, limits.silence_dbfs)
    speech = db > floor
    speech_frames = int(speech.sum())
    non_speech = 1.0 - speech_frames / len(db)
    idx = np.flatnonzero(speech)
    span = float((idx[-1] - idx[0]) * HOP_S + FRAME_S) if idx.size else 0.0
    return AudioFacts(
        duration_s=duration,
        speech_s=speech_frames * HOP_S,
        span_s=min(span, duration),
        non_speech_ratio=float(non_speech),
        peak=peak,
        clip_fraction=clip,
    )


def check_audio(mono: np.ndarray, rate: int, limits: Limits) -> tuple[Verdict, AudioFacts | None]:
    """Verdict on the decoded (native-rate, mono) signal, with the measurements behind it."""
    if mono.size == 0:
        return Verdict("empty_audio", "no samples"), None
    if rate < limits.min_sample_rate:
        return Verdict("sample_rate", f"{rate} Hz is below {limits.min_sample_rate} Hz; find a wider-band copy"), None
    if not np.isfinite(mono).all():
        return Verdict("decode_error", "samples contain NaN or Inf"), None
    facts = audio_facts(mono, rate, limits)
    peak_db = 20 * math.log10(facts.peak) if facts.peak > 0 else -math.inf
    if peak_db < limits.silence_dbfs:
        return Verdict("silent", f"peak {peak_db:.1f} dBFS is below {limits.silence_dbfs} dBFS"), facts
    if facts.clip_fraction > limits.max_clip_fraction:
        return Verdict("clipping", f"{facts.clip_fraction:.2%} of samples at full scale"), facts
    if facts.duration_s < limits.min_duration_s:
        return Verdict("too_short", f"{facts.duration_s:.2f} s < {limits.min_duration_s} s"), facts
    if facts.duration_s > limits.max_duration_s:
        return Verdict("too_long", f"{facts.duration_s:.2f} s > limits.max_duration_s={limits.max_duration_s}"), facts
    if facts.non_speech_ratio > limits.max_non_speech_ratio:
        return Verdict("non_speech", f"{facts.non_speech_ratio:.0%} of frames are not speech"), facts
    return Verdict(None), facts


def chars_per_second(text: str, span_s: float) -> float:
    """Letters and digits per second of the speech span (leading/trailing silence excluded)."""
    chars = sum(c.isalnum() for c in text)
    return chars / span_s if span_s > 0 else math.inf


def check_rate(text: str, facts: AudioFacts, limits: Limits) -> Verdict:
    rate = chars_per_second(text, facts.span_s)
    if not limits.min_chars_per_s <= rate <= limits.max_chars_per_s:
        return Verdict(
            "speech_rate",
            f"{rate:.1f} chars/s outside [{limits.min_chars_per_s}, {limits.max_chars_per_s}]: text and audio disagree",
        )
    return Verdict(None)


def rate_outliers(rates: dict[str, float], mads: float, min_rows: int = 20) -> dict[str, str]:
    """Rows whose chars/s is more than `mads` scaled MADs from their source's median.

    The absolute bounds catch gross errors; this catches a source's own
    misalignments once there are enough rows for a median to mean something.
    """
    if len(rates) < min_rows:
        return {}
    values = np.array(list(rates.values()))
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median))) * 1.4826
    if mad <= 0:
        return {}
    return {
        key: f"{value:.1f} chars/s is {abs(value - median) / mad:.1f} MADs from the source median {median:.1f}"
        for key, value in sorted(rates.items())
        if abs(value - median) > mads * mad
    }
