"""Speaker similarity: do cloned held-out voices sound like their references?

Reference and generated audio are both embedded with the BASE model's own
speaker encoder (`Qwen3TTSForConditionalGeneration.extract_speaker_embedding`,
the x-vector that voice cloning conditions on), and the score is the mean
cosine similarity over the clones. This is lenient: it is the encoder the
model was asked to match, so a model could in principle please it without
sounding right to an independent verifier. It is, however, the encoder the
trainer keeps frozen and the base model ships with, so a fine-tune cannot
move it, and it needs no second model on disk. An independent speaker
verification model (e.g. a WavLM or ECAPA verifier) can be added as a
further criterion without changing this one.

A clone that failed, came out empty or silent scores 0: the gate fails closed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import soundfile as sf
import torch

from qwen_train.gate.clones import Clone
from qwen_train.gate.verdict import Criterion
from qwen_train.prepare.resample import resample

ENCODER_RATE = 24000


def embed(base_model: Any, wave: np.ndarray, rate: int) -> torch.Tensor:
    with torch.no_grad():
        vector = base_model.extract_speaker_embedding(audio=resample(wave, rate, ENCODER_RATE), sr=ENCODER_RATE)
    return vector.float().reshape(-1).cpu()


def score_clones(base_model: Any, clones: list[Clone]) -> None:
    """Set each usable clone's similarity to its reference (cached per reference clip)."""
    refs: dict[str, torch.Tensor] = {}
    for clone in clones:
        if not clone.usable:
            continue
        key = str(clone.reference)
        if key not in refs:
            audio, rate = sf.read(key, dtype="float32", always_2d=True)
            refs[key] = embed(base_model, audio.mean(axis=1), rate)
        generated = embed(base_model, clone.wave, clone.rate)
        clone.similarity = float(torch.nn.functional.cosine_similarity(refs[key], generated, dim=0))


def similarity_criterion(clones: list[Clone], minimum: float, language: str) -> Criterion:
    if not clones:
        return Criterion(name="speaker_similarity", passed=False, threshold=minimum,
                         detail="not measured: the bundle's eval split has no held-out-speaker rows to clone")
    scores = [c.similarity if c.similarity is not None else 0.0 for c in clones]
    failed = sum(c.similarity is None for c in clones)
    mean = float(np.mean(scores))
    speakers = len({c.row.speaker_id for c in clones})
    passed = failed < len(clones) and mean >= minimum
    detail = (f"mean cosine {mean:.3f} {'>=' if mean >= minimum else '<'} {minimum:.3f} over {len(clones)} clones "
              f"of {speakers} held-out speaker(s) (language {language}; min {min(scores):.3f}, max "
              f"{max(scores):.3f}; base model's speaker encoder)")
    if failed:
        detail += f"; {failed} clone(s) empty, silent or failed, scored 0"
    return Criterion(name="speaker_similarity", passed=passed, detail=detail, measured=mean, threshold=minimum)
