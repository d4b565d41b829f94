"""The judges that listen: which ones, their names in the scores, and the verifier's calibration (cached).

The ASR judge and the speaker verifier are the gate's own (gate/asr.py: a Whisper-family model, KB-Whisper
on Hemma, or a CTC model; gate/verifier.py: resemblyzer's shipped GE2E encoder, or a transformers x-vector
model given as a directory), so a scores file and a gate verdict judge with the same code. A judge's name is
known before it is loaded (its directory, or the package and version that ships its weights): that is what
keys a row's finished stages and a base row's cache, so a rerun with the same judges loads none of them
for work already done. DNSMOS and Silero VAD are small ONNX models that run on the CPU beside.

The verifier's calibration (calibration.py) depends on the verifier and the bundle's real held-out
recordings only, not on the model scored: it is computed once per verifier and bundle and kept in
RUN_DIR/scores/calibration.json, then copied into every scores file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np

from qwen_train.atomic import atomic_write_bytes
from qwen_train.bundle.manifest import read_manifest
from qwen_train.bundle.rowfiles import read_wave
from qwen_train.gate.verifier import NoSpeech, Verifier, _package
from qwen_train.scores.calibration import calibrate, pick_recordings
from qwen_train.scores.record import Calibration
from qwen_train.spec import ScoresSpec

CALIBRATION_FILE = "calibration.json"


@dataclass(frozen=True)
class JudgeDirs:
    """The judges an operator names: --asr DIR (none: intelligibility and language not measured), --verifier
    DIR (none: resemblyzer)."""

    asr: Path | None = None
    verifier: Path | None = None

    @property
    def asr_name(self) -> str:
        return str(self.asr) if self.asr is not None else ""

    @property
    def verifier_name(self) -> str:
        return str(self.verifier) if self.verifier is not None else f"{_package('resemblyzer')} (GE2E)"


def dnsmos_name() -> str:
    from qwen_train.scores.quality import _version

    return f"speechmos {_version()} DNSMOS P.835"


def vad_name() -> str:
    from qwen_train.scores.vad import _version

    return f"silero-vad {_version()} (ONNX)"


class _Cached(msgspec.Struct, frozen=True):
    key: str
    calibration: Calibration


def calibration_key(verifier: str, fingerprint: str, scores: ScoresSpec) -> str:
    return f"{verifier}|{fingerprint}|{scores.seed}|{scores.calibration_pairs}"


def cached_calibration(scores_dir: Path, key: str) -> Calibration | None:
    try:
        cached = msgspec.json.decode((scores_dir / CALIBRATION_FILE).read_bytes(), type=_Cached)
    except (OSError, msgspec.MsgspecError):
        return None
    return cached.calibration if cached.key == key else None


def real_recordings(bundle: Path) -> list[tuple[str, str]]:
    """(speaker, audio) of every held-out row: the real recordings calibration pairs are drawn from."""
    return [(r.speaker_id, r.audio) for r in read_manifest(bundle) if r.split == "eval"]


def embed_file(verifier: Verifier, bundle: Path, rel: str) -> np.ndarray:
    audio, rate = read_wave(bundle, rel, "held-out recording")
    return verifier.embed(audio.mean(axis=1), rate)


def calibrate_verifier(verifier: Verifier, name: str, bundle: Path, scores: ScoresSpec) -> Calibration:
    """Embed the picked real recordings (one where the verifier hears no speech is left out) and calibrate."""
    speakers: list[str] = []
    embeddings: list[np.ndarray] = []
    for speaker, rel in pick_recordings(real_recordings(bundle), scores.seed):
        try:
            embeddings.append(embed_file(verifier, bundle, rel))
        except NoSpeech:
            continue
        speakers.append(speaker)
    return calibrate(name, speakers, embeddings, scores.calibration_pairs, scores.seed)


def keep_calibration(scores_dir: Path, key: str, calibration: Calibration) -> None:
    scores_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(scores_dir / CALIBRATION_FILE, msgspec.json.encode(_Cached(key=key, calibration=calibration)))
