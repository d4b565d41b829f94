"""Audio -> 12 Hz codes through the real `Qwen3TTSTokenizer.encode`, batched."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
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


def _batches(items: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def encode_files(tok, paths: Sequence[Path], batch_size: int = 8) -> list[np.ndarray]:
    """Codes (frames, 16) int16-safe arrays, one per path, in order."""
    out: list[np.ndarray] = []
    for n, batch in enumerate(_batches(paths, batch_size), start=1):
        wavs = [read_mono_24k(p) for p in batch]
        enc = tok.encode(wavs, sr=24000)
        out.extend(c.detach().cpu().numpy().astype(np.int32) for c in enc.audio_codes)
        print(f"codes: {min(n * batch_size, len(paths))}/{len(paths)}", file=sys.stderr, flush=True)
    return out
