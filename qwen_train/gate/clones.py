"""The clones the gate judged, as it keeps them: one record per clone, its wav and samples.json beside the verdict.

The clones themselves are the listening scores' (qwen_train/scores: the listening set's rows, cloned with
fixed seeds through the public voice-clone API in x-vector mode, judged there); gate/listen.py turns a
scores record into these Clone records, so the verdict's samples and per-speaker rows are exactly what the
criteria read. A clone that failed, came out shorter than 0.1 s or quieter than `min_clone_peak` is kept
for the operator to hear but is not usable: its base-encoder similarity is not scored and it counts as
transcribed as nothing (the gate fails closed).

`clone_rows` is the older round-robin pick of held-out-speaker rows (one speaker after another), kept for
callers that want rows without a listening set.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import soundfile as sf

from qwen_train.atomic import atomic_write_bytes
from qwen_train.bundle.manifest import Row, read_manifest

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
