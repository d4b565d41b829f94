"""What scoring one model has done so far, row by row: what lets a killed scorer lose nothing. No torch.

Scoring runs in stages, one model in memory at a time (the TTS model for the clones, then the speaker
verifier, then the ASR judge, then the small ONNX judges), and a stage's result for a row is written the
moment it exists: RUN_DIR/scores/work/NAME-MODEL-SET/NNN.json, one file per row, atomically rewritten as
each stage adds to it, beside the clone's wav in RUN_DIR/scores/audio/NAME/. A stage is done for a row when
its name, with the judge that ran it, is in the row's `done` list, so a rerun with another judge reruns that
stage and keeps the clones. The work dir is keyed by the model's and the set's digests: another checkpoint
written under the same name, or another set, starts afresh. Once the model's scores file is written the work
dir is removed (the wavs stay: the scores name them).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import msgspec

from qwen_train.atomic import atomic_write_bytes
from qwen_train.scores.quality import Mos

WORK_DIR = "work"
AUDIO_DIR = "audio"


class RowWork(msgspec.Struct):
    index: int
    row_id: str
    done: list[str] = []  # "clone", and "STAGE JUDGE" for each judge stage that ran
    language: str = ""  # the language the clone was generated with
    audio: str = ""  # the clone's wav relative to the run dir ("" when generation failed)
    rate: int = 0
    frames: int = 0
    seconds: float = 0.0
    peak: float = 0.0
    hit_limit: bool = False
    error: str | None = None
    similarity: float | None = None
    similarity_note: str | None = None  # why a usable clone has no similarity (the verifier heard no speech)
    transcript: str | None = None
    heard_language: str | None = None
    speech_s: float | None = None
    real_speech_s: float | None = None
    mos: Mos | None = None

    def has(self, stage: str) -> bool:
        return stage in self.done

    def mark(self, stage: str) -> None:
        self.done = [d for d in self.done if d.split(" ", 1)[0] != stage.split(" ", 1)[0]] + [stage]


def work_dir(scores_dir: Path, name: str, model_digest: str, set_digest: str) -> Path:
    return scores_dir / WORK_DIR / f"{name}-{model_digest[:12]}-{set_digest[:12]}"


def audio_path(scores_dir: Path, name: str, index: int) -> Path:
    return scores_dir / AUDIO_DIR / name / f"{index:03d}.wav"


def _path(folder: Path, index: int) -> Path:
    return folder / f"{index:03d}.json"


def load_row(folder: Path, index: int, row_id: str) -> RowWork:
    """The row's work so far; a fresh one when there is none or it is unreadable (a half-written one cannot be:
    writes are atomic, but another version's file may be)."""
    try:
        work = msgspec.json.decode(_path(folder, index).read_bytes(), type=RowWork)
    except (OSError, msgspec.MsgspecError):
        return RowWork(index=index, row_id=row_id)
    return work if work.row_id == row_id else RowWork(index=index, row_id=row_id)


def save_row(folder: Path, work: RowWork) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(_path(folder, work.index), msgspec.json.encode(work))


def drop_work(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    parent = folder.parent
    if parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
