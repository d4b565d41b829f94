"""Language heard: which language the ASR judge, not forced to Swedish, says a clone is in.

Intelligibility decodes with Swedish forced (gate/asr.py), so a clone spoken with a Norwegian or English
accent can still transcribe well. A fine-tune that carries the base languages' accent over is caught here
instead: Whisper's own language identification (its first decoder step, restricted to the language tokens,
`WhisperForConditionalGeneration.detect_language`) is asked for each clone, and the share heard as Swedish
is the score. A KB-Whisper keeps Whisper's language tokens, so the same call works there. A CTC judge has
no language identification: the score is then not measured, with that reason.
"""

from __future__ import annotations

import numpy as np
import torch

from qwen_train.gate.asr import BATCH, WhisperAsr
from qwen_train.prepare.resample import resample

SWEDISH = "sv"
NO_LID = "the ASR judge is a CTC model, which identifies no language (give a Whisper-family --asr)"


def _codes(asr: WhisperAsr) -> dict[int, str]:
    """Language token id -> language code ("<|sv|>" -> "sv")."""
    mapping = getattr(asr.model.generation_config, "lang_to_id", None) or {}
    return {int(i): str(token).strip("<|>") for token, i in mapping.items()}


def heard_languages(asr: WhisperAsr, clips: list[tuple[np.ndarray, int]]) -> list[str]:
    """One language code per (mono wave, rate), as Whisper identifies it unforced."""
    codes = _codes(asr)
    if not codes:
        raise ValueError(f"{asr.judge.model}: its generation config has no lang_to_id: no language identification")
    audios = [resample(wave, rate, asr.rate) for wave, rate in clips]
    heard: list[str] = []
    for start in range(0, len(audios), BATCH):
        features = asr.processor.feature_extractor(audios[start:start + BATCH], sampling_rate=asr.rate,
                                                   return_tensors="pt")
        with torch.no_grad():
            ids = asr.model.detect_language(input_features=features.input_features.to(asr.device, asr.dtype))
        heard += [codes.get(int(i), f"token {int(i)}") for i in ids.reshape(-1).tolist()]
    return heard
