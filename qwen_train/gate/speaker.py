"""Speaker similarity: do cloned held-out voices sound like their references?

Two judges score every clone against its speaker's reference clip, by the
cosine of their embeddings:

- the independent speaker verifier (verifier.py; resemblyzer by default):
  its mean over the clones is the criterion's measured value, held to
  `min_speaker_similarity`;
- the base model's own speaker encoder
  (`Qwen3TTSForConditionalGeneration.extract_speaker_embedding`, the x-vector
  voice cloning conditions on, at 24 kHz): a second figure, held to
  `min_base_encoder_similarity`. It is lenient by nature (the encoder the
  model was asked to match, frozen in training, so a fine-tune cannot move
  it), which is why it is not the judge; a clone it rejects is still wrong.

The criterion passes only when both means clear their floors. A clone that
failed, came out empty or silent, or in which the verifier hears no speech,
scores 0 in the mean (the gate fails closed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import soundfile as sf
import torch

from qwen_train.gate.clones import Clone
from qwen_train.gate.speakers import mean_or_zero
from qwen_train.gate.thresholds import Thresholds
from qwen_train.gate.verdict import Criterion, Figure, Judge
from qwen_train.gate.verifier import NoSpeech, Verifier
from qwen_train.prepare.resample import resample, to_mono

ENCODER_RATE = 24000
BASE_FIGURE = "base_encoder_cosine"

Embed = Callable[[np.ndarray, int], np.ndarray]


def base_embed(base_model: Any) -> Embed:
    """The base model's speaker encoder as an embedding function of (mono wave, rate)."""
    def embed(wave: np.ndarray, rate: int) -> np.ndarray:
        with torch.no_grad():
            vector = base_model.extract_speaker_embedding(audio=resample(wave, rate, ENCODER_RATE), sr=ENCODER_RATE)
        return vector.float().reshape(-1).cpu().numpy()
    return embed


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


def _scores(embed: Embed, clones: list[Clone]) -> list[float | None]:
    """Each usable clone's cosine to its reference (reference embeddings cached per clip); None where unscored."""
    refs: dict[str, np.ndarray] = {}
    scores: list[float | None] = []
    for clone in clones:
        if not clone.usable:
            scores.append(None)
            continue
        key = str(clone.reference)
        if key not in refs:
            audio, rate = sf.read(key, dtype="float32", always_2d=True)
            refs[key] = embed(to_mono(audio), rate)
        try:
            scores.append(cosine(refs[key], embed(clone.wave, clone.rate)))
        except NoSpeech as exc:
            clone.verifier_note = str(exc)
            scores.append(None)
    return scores


def score_base(base_model: Any, clones: list[Clone]) -> None:
    """Set each usable clone's base_similarity (the base model's encoder)."""
    for clone, score in zip(clones, _scores(base_embed(base_model), clones), strict=True):
        clone.base_similarity = score


def score_verified(verifier: Verifier, clones: list[Clone]) -> None:
    """Set each usable clone's similarity as the independent verifier hears it."""
    for clone, score in zip(clones, _scores(verifier.embed, clones), strict=True):
        clone.similarity = score


def _base_figure(clones: list[Clone], minimum: float, base_error: str) -> tuple[Figure, str]:
    if base_error:
        return Figure(BASE_FIGURE, None, minimum, False), f"base encoder not measured: {base_error}"
    mean = mean_or_zero([c.base_similarity for c in clones])
    passed = mean >= minimum and any(c.base_similarity is not None for c in clones)
    return (Figure(BASE_FIGURE, mean, minimum, passed),
            f"base model's encoder {mean:.3f} {'>=' if passed else '<'} {minimum:.3f} (a second, lenient figure: "
            "the encoder the model conditions on)")


def similarity_criterion(clones: list[Clone], t: Thresholds, language: str, verifier: Judge | None,
                         base_error: str = "") -> Criterion:
    """Pass when the verifier's mean and the base encoder's mean both clear their floors."""
    # The floor: the gate passes the calibrated level in (gate/listening.py); None here holds to no floor.
    minimum = t.min_speaker_similarity if t.min_speaker_similarity is not None else -1.0
    if not clones:
        return Criterion(name="speaker_similarity", passed=False, threshold=minimum,
                         detail="not measured: the bundle's eval split has no held-out-speaker rows to clone")
    scores = [c.similarity for c in clones]
    mean = mean_or_zero(scores)
    scored = [s for s in scores if s is not None]
    zeroed = [s if s is not None else 0.0 for s in scores]
    figure, base_text = _base_figure(clones, t.min_base_encoder_similarity, base_error)
    own = bool(scored) and mean >= minimum
    speakers = len({c.row.speaker_id for c in clones})
    kind = verifier.kind if verifier else "unnamed"
    detail = (f"verifier ({kind}) mean cosine {mean:.3f} {'>=' if own else '<'} {minimum:.3f} over "
              f"{len(clones)} clones of {speakers} held-out speaker(s) (min {min(zeroed):.3f}, max "
              f"{max(zeroed):.3f}; language {language}); {base_text}")
    unscored = len(clones) - len(scored)
    if unscored:
        silent = sum(c.verifier_note is not None for c in clones)
        detail += (f"; {unscored} clone(s) unscored, counted 0"
                   + (f" ({silent} with no speech the verifier could hear)" if silent else ""))
    return Criterion(name="speaker_similarity", passed=own and bool(figure.passed), detail=detail, measured=mean,
                     threshold=minimum, figures=[figure])
