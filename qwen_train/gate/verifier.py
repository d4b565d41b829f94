"""The independent speaker verifier: does a clone sound like its reference, to a model that is not the TTS's?

The base model's own speaker encoder is the one the trainer conditions on,
so a clone can please it without sounding like the speaker (on the random
tiny model every clone scores about 0.96 there). The gate's judge of
speaker_similarity is therefore a verifier of its own:

- by default resemblyzer's pretrained GE2E voice encoder, which ships inside
  its wheel (no download at run time, so it works offline on Hemma and in
  CI). Audio is resampled to its 16 kHz with soxr, clipped to full scale,
  then prepared as resemblyzer prepares it (volume raised to -30 dBFS, long
  silences cut by its WebRTC voice detector) and embedded as one utterance
  (the mean of 1.6 s partial embeddings, unit length);
- or a speaker-verification model directory given with --verifier: a
  transformers audio x-vector model (`AutoModelForAudioXVector`, e.g. a WavLM,
  UniSpeech-SAT or wav2vec2 with an x-vector head) and its feature extractor,
  at the extractor's rate. (ECAPA-TDNN models are SpeechBrain's, not
  transformers': export one to an x-vector model directory to use it here.)

Both give unit vectors; similarity is their cosine. A clone in which the
voice detector finds no speech raises NoSpeech: it scores 0, like a failed
clone (the gate fails closed).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from qwen_train.gate.verdict import Judge
from qwen_train.prepare.resample import resample

RESEMBLYZER_RATE = 16000
MIN_SPEECH_S = 0.2  # less than this left after silence trimming is no voice to verify


class NoSpeech(ValueError):
    """The verifier found no speech in a clip."""


class Verifier(Protocol):
    judge: Judge

    def embed(self, wave: np.ndarray, rate: int) -> np.ndarray:
        """A unit-length speaker embedding of mono audio at `rate`; NoSpeech where there is no voice."""
        ...


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0.0:
        raise NoSpeech("the verifier's embedding is zero or not finite")
    return (vector / norm).astype(np.float32)


def _package(name: str) -> str:
    try:
        return f"{name} {version(name)}"
    except PackageNotFoundError:
        return name


class ResemblyzerVerifier:
    """resemblyzer's GE2E voice encoder, with the weights its wheel ships."""

    def __init__(self, device: torch.device) -> None:
        try:
            from resemblyzer import VoiceEncoder, preprocess_wav
        except ImportError as exc:
            raise RuntimeError(f"the default speaker verifier needs resemblyzer ({exc}): install it with "
                               "`pip install --no-deps resemblyzer==0.1.4` (scripts/setup.sh does), or give "
                               "--verifier DIR") from None
        self._prepare = preprocess_wav
        self.encoder: Any = VoiceEncoder(device=device, verbose=False)
        self.judge = Judge(role="speaker_verifier", kind="resemblyzer",
                           model=f"{_package('resemblyzer')} (pretrained GE2E voice encoder shipped in its wheel)",
                           detail=f"{device.type}, {RESEMBLYZER_RATE} Hz via soxr, volume normalised and long "
                                  "silences trimmed by its voice detector, utterance embedding")

    def embed(self, wave: np.ndarray, rate: int) -> np.ndarray:
        audio = np.clip(resample(wave, rate, RESEMBLYZER_RATE), -1.0, 1.0)
        speech = self._prepare(audio)
        if speech.size < MIN_SPEECH_S * RESEMBLYZER_RATE:
            raise NoSpeech(f"the verifier's voice detector left {speech.size / RESEMBLYZER_RATE:.2f} s of speech")
        return _unit(np.asarray(self.encoder.embed_utterance(speech), dtype=np.float32))


class XVectorVerifier:
    """A transformers speaker-verification model (an x-vector head) and its feature extractor."""

    def __init__(self, model_dir: Path, device: torch.device) -> None:
        from transformers import AutoFeatureExtractor, AutoModelForAudioXVector

        self.extractor: Any = AutoFeatureExtractor.from_pretrained(str(model_dir))
        self.model: Any = AutoModelForAudioXVector.from_pretrained(str(model_dir)).to(device).eval()
        self.rate = int(self.extractor.sampling_rate)
        self.device = device
        self.judge = Judge(role="speaker_verifier", kind="xvector", model=str(model_dir),
                           detail=f"{type(self.model).__name__}, {device.type}, {self.rate} Hz via soxr")

    def embed(self, wave: np.ndarray, rate: int) -> np.ndarray:
        inputs = self.extractor(resample(wave, rate, self.rate), sampling_rate=self.rate, return_tensors="pt")
        with torch.no_grad():
            out = self.model(**{k: v.to(self.device) for k, v in inputs.items()})
        return _unit(out.embeddings[0].float().cpu().numpy())


def load_verifier(model_dir: Path | None, device: torch.device) -> Verifier:
    """The --verifier model, or the default resemblyzer encoder when none is given."""
    return ResemblyzerVerifier(device) if model_dir is None else XVectorVerifier(model_dir, device)
