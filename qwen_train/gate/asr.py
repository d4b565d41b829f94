"""The ASR judge of intelligibility, from --asr DIR: a Whisper-family model, or a CTC model.

The Swedish ASR models people use and trust are Whisper fine-tunes (KBLab's
KB-Whisper family), so a Whisper directory (`model_type` "whisper": a
`WhisperForConditionalGeneration` and its processor) is judged as one:
decoding is forced to Swedish transcription without timestamps (a model left
to detect the language could "hear" the clone as Norwegian and translate
it), greedy (one beam, no sampling: no search repairs a mumbled word), in
batches, on the GPU in float16 when there is one. Any other directory is a
CTC model (a wav2vec2 fine-tuned on Swedish), decoded by argmax and the
tokenizer's CTC collapse, one clip at a time (a wav2vec2 without an attention
mask hears the padding of a batch). Neither has a language model.

Audio reaches either at its own rate through the project's one resampler
(soxr, prepare.resample). Whisper hears at most 30 s of a clip (its feature
extractor's window); the gate's clones are shorter than that at the default
`max_new_tokens` (360 codec frames, 30 s), and anything past it would count
as unheard, which fails closed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from qwen_train.gate.target import asr_family
from qwen_train.gate.verdict import Judge
from qwen_train.prepare.resample import resample

BATCH = 8  # clips per Whisper generate call
LANGUAGE = "sv"
PROMPT_TOKENS = 4  # <|startoftranscript|> <|sv|> <|transcribe|> <|notimestamps|>


class Asr(Protocol):
    judge: Judge

    def transcribe(self, clips: list[tuple[np.ndarray, int]]) -> list[str]:
        """One transcript per (mono wave, rate), in order."""
        ...


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers 4.57's Whisper generate warns about its own logits processors on every first call (it
    builds the suppress-token processors twice) and prints the whole suppress list: noise in a gate log."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def _processor(model_dir: Path) -> Any:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(model_dir))
    if not hasattr(processor, "batch_decode") or not hasattr(processor, "feature_extractor"):
        raise ValueError(f"{model_dir}: the processor has no feature extractor and tokenizer pair (an ASR "
                         "model directory needs both)")
    return processor


class WhisperAsr:
    """A Whisper-family model: forced Swedish, greedy, batched."""

    def __init__(self, model_dir: Path, device: torch.device) -> None:
        from transformers import WhisperForConditionalGeneration

        self.processor = _processor(model_dir)
        self.dtype = torch.float16 if device.type == "cuda" else torch.float32
        self.model: Any = WhisperForConditionalGeneration.from_pretrained(str(model_dir), dtype=self.dtype)
        self.model.to(device).eval()
        self.device = device
        self.rate = int(self.processor.feature_extractor.sampling_rate)
        self.max_new_tokens = int(self.model.config.max_target_positions) - PROMPT_TOKENS
        self.judge = Judge(role="asr", kind="whisper", model=str(model_dir),
                           detail=f"greedy, forced language {LANGUAGE}, task transcribe, no timestamps, batches of "
                                  f"{BATCH}, {device.type} {str(self.dtype).removeprefix('torch.')}, "
                                  f"{self.rate} Hz via soxr")

    def generate(self, audios: list[np.ndarray]) -> torch.Tensor:
        """The decoder's token ids for a batch of audio at `self.rate`: the forced prompt, then the transcript."""
        features = self.processor.feature_extractor(audios, sampling_rate=self.rate, return_tensors="pt",
                                                    return_attention_mask=True)
        with torch.no_grad(), _quiet_transformers():
            out = self.model.generate(
                features.input_features.to(self.device, self.dtype),
                attention_mask=features.attention_mask.to(self.device), language=LANGUAGE, task="transcribe",
                return_timestamps=False, num_beams=1, do_sample=False, max_new_tokens=self.max_new_tokens,
                force_unique_generate_call=True,  # one window per clip: never a second, seeked segment
            )
        return (out if isinstance(out, torch.Tensor) else out.sequences).cpu()

    def transcribe(self, clips: list[tuple[np.ndarray, int]]) -> list[str]:
        audios = [resample(wave, rate, self.rate) for wave, rate in clips]
        texts: list[str] = []
        for start in range(0, len(audios), BATCH):
            ids = self.generate(audios[start:start + BATCH])
            texts += [str(t).strip() for t in self.processor.batch_decode(ids, skip_special_tokens=True)]
        return texts


class CtcAsr:
    """A CTC model (wav2vec2 and kin): argmax, CTC collapse, one clip at a time."""

    def __init__(self, model_dir: Path, device: torch.device) -> None:
        from transformers import AutoModelForCTC

        self.processor = _processor(model_dir)
        self.model: Any = AutoModelForCTC.from_pretrained(str(model_dir)).to(device).eval()
        self.rate = int(self.processor.feature_extractor.sampling_rate)
        self.device = device
        self.judge = Judge(role="asr", kind="ctc", model=str(model_dir),
                           detail=f"greedy CTC (argmax), no language model, {device.type}, {self.rate} Hz via soxr")

    def _one(self, wave: np.ndarray, rate: int) -> str:
        inputs = self.processor(resample(wave, rate, self.rate), sampling_rate=self.rate, return_tensors="pt")
        with torch.no_grad():
            logits = self.model(inputs.input_values.to(self.device)).logits
        return str(self.processor.batch_decode(logits.argmax(dim=-1).cpu())[0])

    def transcribe(self, clips: list[tuple[np.ndarray, int]]) -> list[str]:
        return [self._one(wave, rate) for wave, rate in clips]


def load_asr(model_dir: Path, device: torch.device) -> Asr:
    """The judge for `model_dir`: Whisper when its config says so, CTC otherwise."""
    if asr_family(model_dir) == "whisper":
        return WhisperAsr(model_dir, device)
    return CtcAsr(model_dir, device)
