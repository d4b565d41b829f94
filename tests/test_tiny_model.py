"""The tiny model is the real architecture, loaded through the real qwen-tts path."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import soundfile as sf
import torch


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_loads_through_qwen_tts_and_clones_a_voice(demo_root: Path) -> None:
    from qwen_tts import Qwen3TTSModel, Qwen3TTSTokenizer

    model_dir = demo_root / "model"
    wrapper = Qwen3TTSModel.from_pretrained(str(model_dir), dtype=torch.float32)
    assert wrapper.model.tts_model_type == "base"
    assert wrapper.model.speaker_encoder is not None
    tok = wrapper.processor.tokenizer
    assert len(tok.encode("<|im_start|>assistant\n")) == 3
    assert len(tok.encode("<|im_end|>\n<|im_start|>assistant\n")) == 5
    assert tok.decode(tok.encode("Åsa äter smörgås på ön")) == "Åsa äter smörgås på ön"
    speech = Qwen3TTSTokenizer.from_pretrained(str(model_dir / "speech_tokenizer"))
    audio, rate = sf.read(str(demo_root / "bundle" / "anchors" / "astrid.wav"), dtype="float32")
    codes = speech.encode(audio, sr=rate).audio_codes[0]
    assert codes.shape[1] == 16
    assert abs(codes.shape[0] - len(audio) / 1920) <= 1  # 12.5 frames per second
    assert codes.unique().numel() > 20  # filled codebooks: frames do not all collapse to code 0
    wavs, out_rate = wrapper.generate_voice_clone(
        text="Hej, hur mår du?", language="auto", ref_audio=(audio, rate), x_vector_only_mode=True,
        max_new_tokens=12, non_streaming_mode=True,
    )
    assert out_rate == 24000 and wavs[0].ndim == 1 and np.isfinite(wavs[0]).all()
    # Audible, not silence: the decoder's codebooks are filled and its gain calibrated, so what the
    # promotion gate listens to (loudness, speaker similarity, ASR) is a real signal.
    assert float(np.sqrt(np.mean(wavs[0] ** 2))) > 0.01, "the tiny model's clone is silent"
    decoded = speech.decode([{"audio_codes": codes}])[0][0]
    assert float(np.abs(decoded).max()) > 0.05  # the anchor's own codes decode to sound as well


def test_seeded_and_reproducible(tmp_path: Path) -> None:
    from qwen_train.tiny.model import build_tiny_model

    a = build_tiny_model(tmp_path / "a", seed=3)
    b = build_tiny_model(tmp_path / "b", seed=3)
    c = build_tiny_model(tmp_path / "c", seed=4)
    for rel in ("model.safetensors", "speech_tokenizer/model.safetensors", "tokenizer.json"):
        assert _digest(a / rel) == _digest(b / rel), rel
    assert _digest(a / "model.safetensors") != _digest(c / "model.safetensors")
