"""Any rate, any channel count -> 24 kHz mono float32, through libsoxr: the project's one resampler.

Qwen3-TTS's speech tokenizer and speaker encoder both expect 24 kHz mono;
the gate also feeds an ASR model at its own rate (wav2vec2: 16 kHz), through
the same `resample`.
We depend on soxr (the SoX resampler's library, the same engine librosa uses
for `soxr_hq`) rather than write a resampler: its band-limited polyphase
filter keeps the 16 kHz sources' spectrum intact without aliasing.
"""

from __future__ import annotations

import numpy as np
import soxr

TARGET_RATE = 24000


def to_mono(audio: np.ndarray) -> np.ndarray:
    """(frames, channels) or (frames,) -> (frames,) float32, channels averaged."""
    if audio.ndim == 1:
        return audio.astype(np.float32, copy=False)
    if audio.shape[1] == 1:
        return np.ascontiguousarray(audio[:, 0], dtype=np.float32)
    return audio.mean(axis=1, dtype=np.float32)


def resample(mono: np.ndarray, rate: int, target: int, quality: str = "HQ") -> np.ndarray:
    """Resample a mono signal to `target` Hz as float32; an input already at `target` is returned as is."""
    if rate == target:
        return mono.astype(np.float32, copy=False)
    out = soxr.resample(mono.astype(np.float32, copy=False), rate, target, quality=quality)
    return np.asarray(out, dtype=np.float32)


def to_24k(mono: np.ndarray, rate: int, quality: str = "HQ") -> np.ndarray:
    """Resample a mono float32 signal to 24 kHz; a 24 kHz input is returned as is."""
    return resample(mono, rate, TARGET_RATE, quality)
