"""Intelligibility: an ASR model transcribes the clones, scored by character error rate.

The ASR model is a transformers CTC model directory given with --asr (in real
use a wav2vec2 fine-tuned on Swedish, e.g. KBLab's), loaded through
AutoProcessor + AutoModelForCTC and decoded greedily (argmax, CTC collapse by
the tokenizer). Greedy decoding with no language model is deliberate: a
language model would repair mumbled words and flatter the TTS model.

No ASR model means the criterion is not measured, and so fails: the gate
never passes on evidence it did not see.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from qwen_train.gate.cer import char_errors, corpus_cer
from qwen_train.gate.clones import Clone
from qwen_train.gate.verdict import Criterion
from qwen_train.prepare.resample import resample

NO_ASR = ("not measured: no ASR model given (--asr DIR, a Swedish CTC model such as a wav2vec2 fine-tuned on "
          "Swedish)")


class Asr:
    """A CTC model and its processor; `transcribe` takes mono audio at any rate."""

    def __init__(self, model_dir: Path, device: torch.device) -> None:
        from transformers import AutoModelForCTC, AutoProcessor

        self.processor: Any = AutoProcessor.from_pretrained(str(model_dir))
        if not hasattr(self.processor, "batch_decode") or not hasattr(self.processor, "feature_extractor"):
            raise ValueError(f"{model_dir}: the processor has no feature extractor and tokenizer pair (a CTC "
                             "model directory needs both)")
        self.model: Any = AutoModelForCTC.from_pretrained(str(model_dir)).to(device).eval()
        self.rate = int(self.processor.feature_extractor.sampling_rate)
        self.device = device

    def transcribe(self, wave: np.ndarray, rate: int) -> str:
        audio = resample(wave, rate, self.rate)
        inputs = self.processor(audio, sampling_rate=self.rate, return_tensors="pt")
        with torch.no_grad():
            logits = self.model(inputs.input_values.to(self.device)).logits
        return str(self.processor.batch_decode(logits.argmax(dim=-1).cpu())[0])


def transcribe_clones(asr: Asr, clones: list[Clone]) -> None:
    """A failed or empty clone transcribes as nothing (every reference character an error)."""
    for clone in clones:
        clone.transcript = asr.transcribe(clone.wave, clone.rate) if clone.usable else ""


def intelligibility_criterion(clones: list[Clone], maximum: float) -> Criterion:
    if not clones:
        return Criterion(name="intelligibility", passed=False, threshold=maximum,
                         detail="not measured: the bundle's eval split has no held-out-speaker rows to clone")
    pairs = [(c.row.text, c.transcript or "") for c in clones]
    try:
        cer = corpus_cer(pairs)
    except ValueError:
        return Criterion(name="intelligibility", passed=False, threshold=maximum,
                         detail="not measured: the held-out texts are empty after normalisation")
    rates = [(e / n, clone) for clone, (e, n) in zip(clones, (char_errors(*p) for p in pairs), strict=True) if n]
    worst = max(rates, key=lambda pair: pair[0], default=None)
    passed = cer <= maximum
    detail = (f"CER {cer:.3f} {'<=' if passed else '>'} {maximum:.3f} over {len(clones)} clones "
              f"(greedy CTC, texts normalised)")
    failed = sum(not c.usable for c in clones)
    if failed:
        detail += f"; {failed} clone(s) empty, silent or failed, transcribed as nothing"
    if worst is not None:
        detail += f"; worst {worst[0]:.2f}: {worst[1].row.text!r} heard as {worst[1].transcript!r}"
    return Criterion(name="intelligibility", passed=passed, detail=detail, measured=cer, threshold=maximum)
