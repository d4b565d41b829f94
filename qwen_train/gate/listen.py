"""The listening scores the gate's criteria read: of the judged checkpoint and of the base model.

The gate reads the very records `qwen-train score` (the daemon's scoring job) writes, in RUN_DIR/scores,
when they are current (the same model, listening set and judges: scores/command.is_current), and otherwise
scores the model itself with the same code, writing them there as the scorer would, so a later gate or the
daemon's table reads them too. A judged checkpoint of the run is scored as that checkpoint (its scores are
the checkpoint's, whoever asked); an --export as itself (RUN_DIR/scores/export-DIGEST.json). When the
thresholds file bounds the listening set differently from the run's spec (rows, generation length, seed),
the gate's set is its own and is kept apart, in RUN_DIR/scores/gate-SETDIGEST/, so the run's records never
mix two sets.

The clones the criteria were decided on become the verdict's samples (and its per-speaker rows): each
scores row's wav, with its manifest row, transcript and verifier similarity.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import soundfile as sf
import torch

from qwen_train.bundle.manifest import read_manifest
from qwen_train.gate.clones import Clone
from qwen_train.gate.target import Target
from qwen_train.gate.thresholds import listening_spec
from qwen_train.run_lock import acquire
from qwen_train.scores.engine import Scorer
from qwen_train.scores.judges import JudgeDirs
from qwen_train.scores.listening import ListeningSet, listening_set
from qwen_train.scores.models import Subject, base_subject, checkpoint_subject, dir_digest, export_subject
from qwen_train.scores.options import is_current
from qwen_train.scores.record import SCORES_DIR, Scores
from qwen_train.spec import RunSpec, ScoresSpec


@dataclass(frozen=True)
class Listening:
    """The gate's listening set and where its scores live."""

    spec: RunSpec  # the run's spec, its `scores` section the gate's set
    lset: ListeningSet
    scores_dir: Path
    judges: JudgeDirs

    @property
    def own_set(self) -> bool:
        return self.scores_dir.name != SCORES_DIR


def plan(t: Target) -> Listening:
    """The set the gate listens to (the run's, or its thresholds' bounds) and its scores dir; ValueError or
    BundleError when the bundle has no held-out rows."""
    section: ScoresSpec = listening_spec(t.thresholds, t.spec.scores)
    spec = msgspec.structs.replace(t.spec, scores=section)
    lset = listening_set(Path(spec.bundle), section)
    root = t.run_dir / SCORES_DIR
    ours = listening_set(Path(spec.bundle), t.spec.scores).digest if section != t.spec.scores else lset.digest
    folder = root if ours == lset.digest else root / f"gate-{lset.digest[:12]}"
    judges = JudgeDirs(asr=t.asr.resolve() if t.asr else None, verifier=t.verifier.resolve() if t.verifier else None)
    return Listening(spec=spec, lset=lset, scores_dir=folder, judges=judges)


def judged_subject(t: Target, spec: RunSpec) -> Subject:
    """The run's checkpoint when the gate judges one (its scores are the checkpoint's), else the export."""
    if t.checkpoint is not None and t.checkpoint.is_dir():
        return checkpoint_subject(t.checkpoint, spec)
    return export_subject(t.export, spec)


def scores_of(listening: Listening, t: Target, subject: Subject, device: torch.device) -> Scores:
    """Current scores of `subject`, read or made now (under the scores lock, as `qwen-train score` takes it)."""
    path = listening.scores_dir / subject.file
    found = is_current(path, subject.digest, listening.lset, listening.judges)
    if found is not None:
        return found
    with acquire(t.run_dir / SCORES_DIR, None, f"qwen-train gate {t.run_dir}"):
        scorer = Scorer(t.run_dir, listening.scores_dir, listening.spec, listening.lset, listening.judges, device)
        return scorer.score(subject)


def base_of(listening: Listening, t: Target, device: torch.device) -> tuple[Scores, Path]:
    """The base row and its file: the run's (base.json) when the gate's base is the spec's model, else one of its
    own (base-DIGEST.json), so a --base never replaces the run's reference row."""
    subject = base_subject(listening.spec)
    if t.base.resolve() != subject.path.resolve():
        digest = dir_digest(t.base)
        subject = Subject(name="base", kind="base", path=t.base, step=None, digest=digest, language=None,
                          file_name=f"base-{digest[:12]}.json")
    return scores_of(listening, t, subject, device), listening.scores_dir / subject.file


def clones_from(scores: Scores, run_dir: Path, bundle: Path, min_peak: float) -> list[Clone]:
    """The scored clones as the gate's Clone records (wave, row, transcript, verifier similarity); a clone
    quieter than `min_peak` is kept but marked silent, as the gate always has."""
    rows = {r.id: r for r in read_manifest(bundle)}
    clones: list[Clone] = []
    for scored in scores.per_row:
        row = rows[scored.row_id]
        wave, rate = np.zeros(0, np.float32), 24000
        if scored.audio:
            audio, rate = sf.read(str(run_dir / scored.audio), dtype="float32", always_2d=True)
            wave = audio.mean(axis=1)
        clone = Clone(row, bundle / row.ref_audio, wave, int(rate), scored.error, similarity=scored.similarity,
                      transcript=scored.transcript)
        peak = float(np.abs(wave).max()) if wave.size else 0.0
        if clone.error is None and wave.size and peak < min_peak:
            clone.error = f"silent clone (peak {peak:.2g} < min_clone_peak {min_peak:g})"
        clones.append(clone)
    return clones
