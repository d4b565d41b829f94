"""One clone of one listening row, through the public qwen-tts voice-clone API, as the gate has always cloned.

x-vector mode (the speaker encoder's embedding of the reference clip is the whole voice prompt; no reference
transcript needed), non-streaming, the model's own sampling defaults, seeded per row (torch's global seed set
to the row's seed just before), generation bounded by the row's `max_new_tokens`. The clone's length in codec
frames is its wave's length over the speech tokenizer's samples per frame (exact in x-vector mode, where no
reference codes are decoded with it); a clone whose frames reach the limit never emitted end-of-speech.

The wav is written next to the scores (RUN_DIR/scores/audio/NAME/NNN.wav), atomically (a temp file renamed
in), so a kill leaves either the whole clone or none.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from qwen_train.bundle.rowfiles import read_wave
from qwen_train.scores.listening import ListeningRow


@dataclass
class Clone:
    wave: np.ndarray  # float32 mono; empty when generation failed
    rate: int
    frames: int
    error: str | None = None


def clone_language(wrapper: Any, wanted: str | None) -> str:
    """The run's tag where the model has it (a fine-tune), else "auto" (the base, zero-shot)."""
    supported = {str(x).lower() for x in (wrapper.model.get_supported_languages() or [])}
    return wanted if wanted is not None and wanted.lower() in supported else "auto"


def samples_per_frame(wrapper: Any) -> int:
    return int(wrapper.model.speech_tokenizer.get_decode_upsample_rate())


def generate(wrapper: Any, bundle: Path, row: ListeningRow, language: str) -> Clone:
    """The row's clone; a failure is recorded as the clone's error (the rest of the set is still scored)."""
    try:
        audio, rate = read_wave(bundle, row.ref_audio, "reference audio")
        torch.manual_seed(row.seed)
        with torch.no_grad():
            wavs, out_rate = wrapper.generate_voice_clone(
                text=row.text, language=language, ref_audio=(audio.mean(axis=1), rate), x_vector_only_mode=True,
                max_new_tokens=row.max_new_tokens, non_streaming_mode=True,
            )
        wave = np.asarray(wavs[0], dtype=np.float32).reshape(-1)
    except Exception as exc:  # one bad row is recorded, the rest still measured
        return Clone(np.zeros(0, np.float32), 24000, 0, f"{type(exc).__name__}: {exc}")
    if not np.isfinite(wave).all():
        return Clone(np.zeros(0, np.float32), int(out_rate), 0, "generated audio is not finite")
    frames = int(round(wave.size / max(1, samples_per_frame(wrapper))))
    return Clone(wave, int(out_rate), frames)


def reached_limit(frames: int, max_new_tokens: int) -> bool:
    """Whether a clone of `frames` codec frames ran to its limit without end-of-speech (module docstring)."""
    return frames >= max_new_tokens - 1


def write_wav(path: Path, wave: np.ndarray, rate: int) -> None:
    """16-bit PCM, renamed into place whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(str(tmp), np.clip(wave, -1.0, 1.0), rate, subtype="PCM_16", format="WAV")
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_clone(path: Path) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return audio.mean(axis=1), int(rate)


def read_bundle_wave(bundle: Path, rel: str) -> tuple[np.ndarray, int]:
    """A real recording of the bundle, mono (through the bundle's own safe reader)."""
    audio, rate = read_wave(bundle, rel, "held-out recording")
    return audio.mean(axis=1), rate
