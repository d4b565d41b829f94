"""Held-out voices cloned by the judged model: the audio that similarity and intelligibility score.

Rows are the eval split's held-out-speaker rows (eval_kind
"held_out_speaker": voices the run never trained on), taken round-robin over
the speakers so a bound on rows still covers every voice it can. Each row's
text is spoken in the voice of its speaker's reference clip (the anchor the
bundle carries), through the public voice-clone API in x-vector mode:
conditioning from reference audio through the speaker encoder is what the
trainer trains, and x-vector mode needs no reference transcript. The language
is the run's tag ("swedish") when the model has it, else "auto".

A clone that failed, came out shorter than 0.1 s or quieter than
`min_clone_peak` is kept for the operator to hear but is not usable: it
scores 0 similarity and is transcribed as nothing (the gate fails closed).

Generation samples (the model's own defaults); each clone is seeded with
seed + its index, so a rerun of the gate hears the same clones.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import soundfile as sf
import torch

from qwen_train.atomic import atomic_write_bytes
from qwen_train.bundle.manifest import Row, read_manifest
from qwen_train.bundle.rowfiles import read_wave
from qwen_train.gate.thresholds import Thresholds

MIN_SAMPLES = 2400  # 0.1 s at 24 kHz: shorter output is no speech to score


@dataclass
class Clone:
    row: Row
    reference: Path
    wave: np.ndarray  # float32 mono; empty when generation failed
    rate: int
    error: str | None = None
    similarity: float | None = None  # the independent speaker verifier's cosine to the reference
    base_similarity: float | None = None  # the base model's speaker encoder's cosine to the reference
    transcript: str | None = None
    verifier_note: str | None = None  # why the verifier could not score a usable clone (no speech heard)

    @property
    def usable(self) -> bool:
        return self.error is None and self.wave.size >= MIN_SAMPLES


class SampleRecord(msgspec.Struct, frozen=True):
    """One clone as RUN_DIR/gate/samples.json lists it, beside its wav."""

    row: str
    speaker: str
    text: str
    reference: str
    audio: str
    seconds: float
    peak: float  # largest absolute sample: near 0 is a silent clone
    similarity: float | None  # the speaker verifier's cosine
    transcript: str | None
    error: str | None
    base_similarity: float | None = None  # the base model's speaker encoder's cosine
    verifier_note: str | None = None


def clone_rows(bundle: Path, limit: int) -> list[Row]:
    """Up to `limit` held-out-speaker eval rows, one speaker after another."""
    by_speaker: dict[str, list[Row]] = defaultdict(list)
    for row in read_manifest(bundle):
        if row.split == "eval" and row.eval_kind == "held_out_speaker":
            by_speaker[row.speaker_id].append(row)
    queues = [by_speaker[s] for s in sorted(by_speaker)]
    picked: list[Row] = []
    depth = 0
    while len(picked) < limit and any(depth < len(q) for q in queues):
        picked += [q[depth] for q in queues if depth < len(q)][: limit - len(picked)]
        depth += 1
    return picked


def clone_language(wrapper: Any, wanted: str | None) -> str:
    supported = {str(x).lower() for x in (wrapper.model.get_supported_languages() or [])}
    return wanted if wanted is not None and wanted.lower() in supported else "auto"


def _one(wrapper: Any, bundle: Path, row: Row, language: str, seed: int, max_new_tokens: int) -> Clone:
    reference = bundle / row.ref_audio
    try:
        # The bundle's own rule for its files: inside its root after symlinks, a bounded regular file.
        audio, rate = read_wave(bundle, row.ref_audio, "reference audio")
        torch.manual_seed(seed)
        wavs, out_rate = wrapper.generate_voice_clone(
            text=row.text, language=language, ref_audio=(audio.mean(axis=1), rate), x_vector_only_mode=True,
            max_new_tokens=max_new_tokens, non_streaming_mode=True,
        )
        wave = np.asarray(wavs[0], dtype=np.float32).reshape(-1)
    except Exception as exc:  # one bad row is recorded, the rest still measured
        return Clone(row, reference, np.zeros(0, np.float32), 24000, f"{type(exc).__name__}: {exc}")
    if not np.isfinite(wave).all():
        return Clone(row, reference, np.zeros(0, np.float32), int(out_rate), "generated audio is not finite")
    return Clone(row, reference, wave, int(out_rate))


def _mark_silent(clone: Clone, min_peak: float) -> Clone:
    peak = float(np.abs(clone.wave).max()) if clone.wave.size else 0.0
    if clone.error is None and clone.wave.size and peak < min_peak:
        clone.error = f"silent clone (peak {peak:.2g} < min_clone_peak {min_peak:g})"
    return clone


def generate_clones(wrapper: Any, bundle: Path, rows: list[Row], language: str, t: Thresholds) -> list[Clone]:
    """One clone per row; a silent one keeps its audio (written for the operator) but is not usable."""
    return [_mark_silent(_one(wrapper, bundle, row, language, t.seed + i, t.max_new_tokens), t.min_clone_peak)
            for i, row in enumerate(rows)]


def write_samples(gate_dir: Path, clones: list[Clone]) -> None:
    """Each clone's wav and one samples.json, so the operator can listen to what was judged."""
    records = []
    for i, clone in enumerate(clones):
        name = f"samples/{i:03d}.wav"
        if clone.wave.size:
            path = gate_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(path), clone.wave, clone.rate, subtype="PCM_16")
        records.append(SampleRecord(
            row=clone.row.id, speaker=clone.row.speaker_id, text=clone.row.text, reference=str(clone.reference),
            audio=name if clone.wave.size else "", seconds=clone.wave.size / clone.rate,
            peak=float(np.abs(clone.wave).max()) if clone.wave.size else 0.0,
            similarity=clone.similarity, transcript=clone.transcript, error=clone.error,
            base_similarity=clone.base_similarity, verifier_note=clone.verifier_note,
        ))
    atomic_write_bytes(gate_dir / "samples.json", msgspec.json.format(msgspec.json.encode(records), indent=2))
