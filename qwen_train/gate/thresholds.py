"""The gate's thresholds and measurement bounds: one JSON file, every field optional.

The defaults are meant for the real 1.7B model and a real Swedish ASR model.
Tiny or random models cannot meet them, and that is the point: a test or a
smoke run that loosens a threshold has to say so in a file that the verdict
records. The measurement bounds (rows, generated length, seed) live in the
same file so that one file is enough to rerun the same judgement.

Unknown fields are rejected: a misspelt threshold must not silently fall back
to its default.
"""

from __future__ import annotations

from pathlib import Path

import msgspec


class ThresholdsError(ValueError):
    """A thresholds file that cannot be used; the message names the file and the field."""


class Thresholds(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    # Mean cosine similarity of cloned held-out voices to their references, as the independent speaker
    # verifier hears them (speaker_similarity's measured value). 0.75 is for the default verifier,
    # resemblyzer's GE2E encoder (same real speaker ~0.8-0.9, different ~0.5-0.7); a --verifier model has its
    # own scale (a WavLM x-vector verifier's same-speaker cosines sit near 0.9): set this for it.
    min_speaker_similarity: float = 0.75
    # The same mean in the base model's own speaker encoder (the x-vector voice cloning conditions on): a
    # second figure, lenient by nature (it is the encoder the model was asked to match), held to its own floor.
    min_base_encoder_similarity: float = 0.5
    # Character error rate of the ASR transcript of the generated speech against its text.
    max_cer: float = 0.25
    # A clone whose loudest sample is below this (full scale 1.0; 1e-3 is -60 dBFS) is silence, not a voice:
    # it scores 0 similarity and is transcribed as nothing.
    min_clone_peak: float = 1e-3
    # Largest share of the resource summary's time span that may be gaps (no sampler running).
    max_resource_gap_fraction: float = 0.10
    # Held-out eval rows scored for both models (the same rows, in manifest order).
    eval_max_rows: int = 256
    # Held-out-speaker rows cloned for similarity and intelligibility (spread over the speakers).
    clone_max_rows: int = 32
    # Codec frames generated per clone at most (12 per second: 360 is 30 s).
    max_new_tokens: int = 360
    # Seed for the sampling in generation; each clone uses seed + its index, so reruns compare like with like.
    seed: int = 1234


def _check(t: Thresholds, source: str) -> Thresholds:
    problems = []
    for name in ("min_speaker_similarity", "min_base_encoder_similarity"):
        if not -1.0 <= getattr(t, name) <= 1.0:
            problems.append(f"{name} {getattr(t, name)} is not a cosine in [-1, 1]")
    if t.min_clone_peak < 0:
        problems.append(f"min_clone_peak {t.min_clone_peak} is negative")
    if t.max_cer < 0:
        problems.append(f"max_cer {t.max_cer} is negative")
    if not 0.0 <= t.max_resource_gap_fraction <= 1.0:
        problems.append(f"max_resource_gap_fraction {t.max_resource_gap_fraction} is not in [0, 1]")
    for name in ("eval_max_rows", "clone_max_rows", "max_new_tokens"):
        if getattr(t, name) <= 0:
            problems.append(f"{name} must be positive, got {getattr(t, name)}")
    if problems:
        raise ThresholdsError(f"{source}: " + "; ".join(problems))
    return t


def decode_thresholds(data: bytes, source: str) -> Thresholds:
    try:
        thresholds = msgspec.json.decode(data, type=Thresholds)
    except msgspec.ValidationError as exc:
        fields = ", ".join(f for f in Thresholds.__struct_fields__)
        raise ThresholdsError(f"{source}: invalid thresholds: {exc} (known fields: {fields})") from None
    except msgspec.DecodeError as exc:
        raise ThresholdsError(f"{source}: not valid JSON: {exc}") from None
    return _check(thresholds, source)


def load_thresholds(path: Path | None) -> Thresholds:
    """The defaults when no file is given; otherwise the file, checked."""
    if path is None:
        return Thresholds()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ThresholdsError(f"cannot read thresholds file {path}: {exc.strerror}; fix --thresholds") from None
    return decode_thresholds(raw, str(path))


def thresholds_record(t: Thresholds) -> dict[str, float]:
    """The thresholds as the verdict records them (all numbers)."""
    return {name: float(getattr(t, name)) for name in Thresholds.__struct_fields__}
