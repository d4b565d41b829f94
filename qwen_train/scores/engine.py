"""Scoring one model on the listening set: clones, then each judge in turn, every row's result kept at once.

One large model is in memory at a time, in this order: the TTS model (the clones), the speaker verifier (the
calibration, once per bundle and verifier, and each clone's similarity), the ASR judge (transcripts, forced
Swedish, and the language heard, unforced), then Silero VAD and DNSMOS on the CPU. The verifier (tens of MiB)
and the ONNX judges stay loaded for the next subject of the same call; the TTS model and the ASR judge do not.
Each stage is skipped for rows that have it already (work.py), and loads its model only when some row
still needs it, so a rerun after a kill goes on where the kill stopped and a finished model costs nothing.
When every row is done the scores file is written atomically (RUN_DIR/scores/step-N.json, or base.json),
and the row work removed.

A usable clone is one that generated without error and is at least 0.1 s long (the gate's rule): the others
are kept (their wav, when there is one, for the operator to hear) and count as silent, unheard and unscored.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np
import torch

from qwen_train.atomic import atomic_write_bytes
from qwen_train.bundle.manifest import read_bundle_info
from qwen_train.gate.asr import BATCH, Asr, WhisperAsr, load_asr
from qwen_train.gate.clones import MIN_SAMPLES
from qwen_train.gate.verifier import NoSpeech, Verifier, load_verifier
from qwen_train.scores import clones as cloning
from qwen_train.scores.judges import (
    JudgeDirs,
    cached_calibration,
    calibrate_verifier,
    calibration_key,
    dnsmos_name,
    embed_file,
    keep_calibration,
    vad_name,
)
from qwen_train.scores.language import NO_LID, heard_languages
from qwen_train.scores.listening import ListeningRow, ListeningSet
from qwen_train.scores.models import Subject, load_subject, scoring_dtype
from qwen_train.scores.quality import Dnsmos
from qwen_train.scores.record import Calibration, Scores
from qwen_train.scores.summary import Judged, summarize
from qwen_train.scores.vad import SileroVad
from qwen_train.scores.work import RowWork, audio_path, drop_work, load_row, save_row, work_dir
from qwen_train.spec import RunSpec
from qwen_train.train.guard.faults import pause

NO_ASR = "no ASR judge given (--asr DIR: a Swedish Whisper such as KB-Whisper, or a CTC model)"


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def say(message: str) -> None:
    print(f"score: {message}", file=sys.stderr, flush=True)


@dataclass
class Scorer:
    """Scores subjects of one run on one listening set with one set of judges, writing into `scores_dir`."""

    run_dir: Path
    scores_dir: Path
    spec: RunSpec
    lset: ListeningSet
    judges: JudgeDirs
    device: torch.device
    log: Callable[[str], None] = say
    calibration: Calibration | None = None
    _loaded_verifier: Verifier | None = field(default=None, repr=False)
    _loaded_onnx: tuple[SileroVad, Dnsmos] | None = field(default=None, repr=False)

    @property
    def bundle(self) -> Path:
        return Path(self.lset.bundle)

    def usable(self, work: RowWork) -> bool:
        return not work.error and bool(work.audio) and work.seconds * work.rate >= MIN_SAMPLES

    def clip(self, work: RowWork) -> tuple[np.ndarray, int]:
        return cloning.read_clone(self.run_dir / work.audio)

    def score(self, subject: Subject) -> Scores:
        """Every stage that some row still lacks, then the scores file; returns the record written."""
        started = time.monotonic()
        folder = work_dir(self.scores_dir, subject.name, subject.digest, self.lset.digest)
        works = [load_row(folder, row.index, row.row_id) for row in self.lset.rows]
        self._clones(subject, folder, works)
        judged_notes: dict[str, str] = {}
        self._verify(folder, works, judged_notes)
        language_note = self._hear(folder, works, judged_notes)
        self._measure(folder, works)
        judged = Judged(asr=self.judges.asr_name if self.judges.asr else "", verifier=self.judges.verifier_name,
                        dnsmos=dnsmos_name(), vad=vad_name(), language_note=language_note,
                        notes=tuple(judged_notes.items()))
        scores = summarize(self.lset, works, step=subject.step, checkpoint=subject.name, model_digest=subject.digest,
                           language=works[0].language if works else "", judged=judged, calibration=self.calibration,
                           seconds=time.monotonic() - started, device=str(self.device))
        self.scores_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.scores_dir / subject.file, msgspec.json.format(msgspec.json.encode(scores), indent=2))
        drop_work(folder)
        return scores

    # -- the clones --------------------------------------------------------------------------------

    def _clones(self, subject: Subject, folder: Path, works: list[RowWork]) -> None:
        todo = [(row, w) for row, w in zip(self.lset.rows, works, strict=True) if not w.has("clone")]
        if not todo:
            return
        dtype = scoring_dtype(self.spec.scores, self.device)
        self.log(f"{subject.name}: loading {subject.path} ({self.device}, {str(dtype).removeprefix('torch.')}); "
                 f"{len(todo)} of {len(works)} clones to make")
        wrapper = load_subject(subject, self.device, dtype)
        language = cloning.clone_language(wrapper, subject.language)
        for row, work in todo:
            self._clone_one(wrapper, subject, row, work, language)
            save_row(folder, work)
            pause("score-row", row.index)  # tests kill the scorer here (QWEN_TEST_PAUSE), to see nothing is lost
        del wrapper
        _free()

    def _clone_one(self, wrapper: object, subject: Subject, row: ListeningRow, work: RowWork, language: str) -> None:
        clone = cloning.generate(wrapper, self.bundle, row, language)
        work.language, work.rate, work.frames, work.error = language, clone.rate, clone.frames, clone.error
        work.seconds = round(clone.wave.size / clone.rate, 4) if clone.rate else 0.0
        work.peak = round(float(np.abs(clone.wave).max()), 6) if clone.wave.size else 0.0
        work.hit_limit = clone.error is None and cloning.reached_limit(clone.frames, row.max_new_tokens)
        if clone.wave.size:
            path = audio_path(self.scores_dir, subject.name, row.index)
            cloning.write_wav(path, clone.wave, clone.rate)
            work.audio = str(path.relative_to(self.run_dir))
        work.mark("clone")

    # -- the speaker verifier ----------------------------------------------------------------------

    def _verify(self, folder: Path, works: list[RowWork], notes: dict[str, str]) -> None:
        stage = f"verifier {self.judges.verifier_name}"
        fingerprint = read_bundle_info(self.bundle).fingerprint
        key = calibration_key(self.judges.verifier_name, fingerprint, self.spec.scores)
        self.calibration = self.calibration or cached_calibration(self.scores_dir, key)
        todo = [w for w in works if not w.has(stage)]
        if not todo and self.calibration is not None:
            return
        self.log(f"speaker verifier {self.judges.verifier_name}: "
                 f"{'calibration and ' if self.calibration is None else ''}{len(todo)} similarities")
        try:
            verifier = self._verifier()
            if self.calibration is None:
                self.calibration = calibrate_verifier(verifier, self.judges.verifier_name, self.bundle,
                                                      self.spec.scores)
                keep_calibration(self.scores_dir, key, self.calibration)
            for work in todo:
                self._similarity(verifier, work, stage)
                save_row(folder, work)
        except Exception as exc:  # the other judges still measure; the scores say why similarity is missing
            notes["similarity"] = f"speaker verifier {self.judges.verifier_name} failed: {type(exc).__name__}: {exc}"

    def _verifier(self) -> Verifier:
        """Loaded once per call and kept: it is small (tens of MiB), and every subject needs it."""
        if self._loaded_verifier is None:
            self._loaded_verifier = load_verifier(self.judges.verifier, self.device)
        return self._loaded_verifier

    def _similarity(self, verifier: Verifier, work: RowWork, stage: str) -> None:
        work.similarity = work.similarity_note = None
        if self.usable(work):
            row = self.lset.rows[work.index]
            try:
                real = embed_file(verifier, self.bundle, row.audio)
                clone = verifier.embed(*self.clip(work))
                work.similarity = round(float(np.dot(real, clone)), 6)
            except NoSpeech as exc:
                work.similarity_note = str(exc)
        work.mark(stage)

    # -- the ASR judge -----------------------------------------------------------------------------

    def _hear(self, folder: Path, works: list[RowWork], notes: dict[str, str]) -> str:
        if self.judges.asr is None:
            notes.update({"cer": NO_ASR, "wer": NO_ASR, "swedish_share": NO_ASR})
            return NO_ASR
        stage = f"asr {self.judges.asr_name}"
        todo = [w for w in works if not w.has(stage)]
        if todo:
            self.log(f"ASR judge {self.judges.asr}: {len(todo)} transcripts")
            try:
                asr = load_asr(self.judges.asr, self.device)
                for start in range(0, len(todo), BATCH):
                    self._transcribe(asr, todo[start:start + BATCH], stage)
                    for work in todo[start:start + BATCH]:
                        save_row(folder, work)
            except Exception as exc:
                why = f"ASR judge {self.judges.asr} failed: {type(exc).__name__}: {exc}"
                notes.update({"cer": why, "wer": why, "swedish_share": why})
                return why
            _free()
        if any(w.heard_language is None and self.usable(w) for w in works):
            notes["swedish_share"] = NO_LID
            return NO_LID
        return ""

    def _transcribe(self, asr: Asr, batch: list[RowWork], stage: str) -> None:
        usable = [w for w in batch if self.usable(w)]
        clips = [self.clip(w) for w in usable]
        texts = asr.transcribe(clips) if clips else []
        languages: list[str | None] = [None] * len(usable)
        if clips and isinstance(asr, WhisperAsr):  # a CTC judge identifies no language
            languages = list(heard_languages(asr, clips))
        for work in batch:
            work.transcript, work.heard_language = "", None
            work.mark(stage)
        for work, text, language in zip(usable, texts, languages, strict=True):
            work.transcript, work.heard_language = text, language

    # -- speech and quality (ONNX, CPU) ------------------------------------------------------------

    def _onnx(self) -> tuple[SileroVad, Dnsmos]:
        """The two CPU judges, loaded once per call."""
        if self._loaded_onnx is None:
            self._loaded_onnx = (SileroVad(), Dnsmos())
        return self._loaded_onnx

    def _measure(self, folder: Path, works: list[RowWork]) -> None:
        if all(w.has("vad") and w.has("dnsmos") for w in works):
            return
        vad, mos = self._onnx()
        for work in works:
            if not work.has("vad"):
                row = self.lset.rows[work.index]
                audio, rate = cloning.read_bundle_wave(self.bundle, row.audio)
                work.real_speech_s = round(vad.speech_seconds(audio, rate), 4)
                work.speech_s = round(vad.speech_seconds(*self.clip(work)), 4) if self.usable(work) else 0.0
                work.mark("vad")
            if not work.has("dnsmos"):
                work.mos = mos.score(*self.clip(work)) if self.usable(work) else None
                work.mark("dnsmos")
            save_row(folder, work)
