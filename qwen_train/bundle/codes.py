"""The speech tokenizer and the audio it accepts: the pieces prepare/codes.py encodes a bundle's clips with."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

SAMPLE_RATE = 24000


def load_speech_tokenizer(model_dir: Path, device: str = "auto") -> Any:
    from qwen_tts import Qwen3TTSTokenizer

    resolved = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    tok = Qwen3TTSTokenizer.from_pretrained(str(model_dir / "speech_tokenizer"), device_map=resolved)
    return tok


def encode_alone(tok: Any, wav: np.ndarray) -> np.ndarray:
    """One clip's codes, (frames, groups), encoded with no batch-mates: a function of the clip alone.

    Batch-mates change a clip's codes two ways. The Mimi encoder ignores the
    padding mask: in a padded batch each strided convolution reads the layer
    below's activations on the zeros past a clip's end, where alone it reads
    its own zero (and, at the 25->12.5 Hz downsample, replicate) padding, so
    the last frame of every clip whose length is not a multiple of the 1920
    sample hop changes. And a batch's shape changes float rounding
    (thread-chunked CPU kernels, shape-chosen GEMM and conv algorithms), which
    flips a code wherever two codewords are nearly tied, even with the padding
    emulated exactly. Only an encode of the clip by itself has neither.
    """
    with exact_fp32():
        enc = tok.encode([wav], sr=SAMPLE_RATE)
    codes: np.ndarray = enc.audio_codes[0].detach().cpu().numpy()
    return codes


@contextmanager
def exact_fp32() -> Iterator[None]:
    """Plain fp32 on the GPU for the encode: no TF32 convolutions or matmuls, no timed algorithm choice.

    cuDNN convolutions run in TF32 by default, which moved 4% of the frames
    to other codes than the CPU gives (H200, a tokenizer of the real shape);
    in fp32 the GPU's codes equal the CPU's. `benchmark` would pick algorithms
    by timing, so codes could change from run to run.
    """
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (cudnn.allow_tf32, cudnn.benchmark, matmul.allow_tf32)
    cudnn.allow_tf32, cudnn.benchmark, matmul.allow_tf32 = False, False, False
    try:
        yield
    finally:
        cudnn.allow_tf32, cudnn.benchmark, matmul.allow_tf32 = saved


def read_mono_24k(path: Path) -> np.ndarray:
    """Read a wav the bundle expects to be 24 kHz mono; anything else is an error that says so."""
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise ValueError(f"{path}: cannot decode audio ({exc}); re-export it as wav") from None
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path}: sample rate {rate} Hz, expected {SAMPLE_RATE}; resample it to 24 kHz mono")
    mono: np.ndarray = audio.mean(axis=1)
    if mono.size == 0:
        raise ValueError(f"{path}: empty audio")
    return mono
