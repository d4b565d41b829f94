"""The speech tokenizer and the audio it accepts: the pieces prepare/codes.py encodes a bundle's clips with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch


def load_speech_tokenizer(model_dir: Path, device: str = "auto"):
    from qwen_tts import Qwen3TTSTokenizer

    resolved = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    tok = Qwen3TTSTokenizer.from_pretrained(str(model_dir / "speech_tokenizer"), device_map=resolved)
    return tok


def read_mono_24k(path: Path) -> np.ndarray:
    """Read a wav the bundle expects to be 24 kHz mono; anything else is an error that says so."""
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise ValueError(f"{path}: cannot decode audio ({exc}); re-export it as wav") from None
    if rate != 24000:
        raise ValueError(f"{path}: sample rate {rate} Hz, expected 24000; resample it to 24 kHz mono")
    mono: np.ndarray = audio.mean(axis=1)
    if mono.size == 0:
        raise ValueError(f"{path}: empty audio")
    return mono
