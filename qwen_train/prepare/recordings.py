"""`recordings`: the operator's own long audio as a corpus, sliced by voice activity, transcribed by Whisper.

A podcast, an audiobook, interviews, a colleague reading for an hour: a folder of long files, one voice
each, sorted into speakers (recording_layout.py). Each file is planned once (recording_plan.py: one
streaming pass through Silero VAD and the acoustics, then the cuts, slicing.py) and its segments become
the source's rows in time order: slices to keep and stretches rejected with their reason (music, noise,
long_silence, overlapping_speech, too_long). A slice's text is the user's where given (the .txt beside
the file, or the cue of its SRT/VTT, which also decided the cut), else Whisper's (transcribe.py), with
its confidence in the row's meta; a transcript under the source's `min_asr_confidence` is
`low_confidence`. From there a slice is a row like any other: process.py reads it from the file by
frame range, validates it, resamples it to 24 kHz and stores it in the work dir, once.

Resuming: a file whose rows are all journaled is counted from its plan, unopened; in the file a window
stopped inside, the plan and the transcripts already made are read back and the rows continue at the
journal's cursor, so nothing journaled is sliced or transcribed again (transcribe.py says how batches
stay the same). What is held in memory is one plan's per-chunk facts while it is made (under 2 MB an
hour), then one batch of slices while it is transcribed, then one slice while it is validated.

The row count of a file not yet planned is estimated from its duration (one row per ESTIMATE_SLICE_S),
so the progress bar's total is an estimate until every file is planned, and exact from then on.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm import tqdm

from qwen_train.prepare.audio import read_span
from qwen_train.prepare.recording_layout import Recording, find_recordings
from qwen_train.prepare.recording_plan import Plan, Planner, PlanStore, row_id
from qwen_train.prepare.recording_summary import notes as notes
from qwen_train.prepare.recording_summary import summary as summary
from qwen_train.prepare.records import AudioRef, ImportReject, Item, Meta, SourceRow
from qwen_train.prepare.resample import resample, to_mono
from qwen_train.prepare.slicing import Segment
from qwen_train.prepare.spec import Limits, SourceSpec
from qwen_train.prepare.transcribe import (
    WHISPER_WINDOW_S,
    AsrUnavailable,
    Transcription,
    WhisperTranscriber,
    compression_ratio,
    refusal,
)
from qwen_train.prepare.vad import model_path

ESTIMATE_SLICE_S = 6.0
Note = Callable[[str], None]
MIN_LOGPROB = -100.0  # an empty decode's mean is -inf, which JSON cannot carry


def check_asr(src: SourceSpec, found: list[Recording]) -> None:
    """AsrUnavailable before any work when a file needs Whisper and the source names none (or not a Whisper)."""
    bare = [r.rel for r in found if r.transcript is None and r.speaker is not None and r.format is not None]
    if bare and src.asr is None:
        shown = ", ".join(bare[:3]) + (f" and {len(bare) - 3} more" if len(bare) > 3 else "")
        raise AsrUnavailable(f"source {src.label!r}: {shown} ha{'s' if len(bare) == 1 else 've'} no transcript beside "
                             "it (.srt, .vtt or .txt) and the source names no `asr` model: set `asr` to a Whisper "
                             "model directory (KB-Whisper), or give the transcripts")
    if bare and src.asr is not None:
        from qwen_train.gate.target import asr_family

        if asr_family(Path(src.asr)) != "whisper":
            raise AsrUnavailable(f"source {src.label!r}: asr {src.asr} is not a Whisper model directory "
                                 "(its config.json's model_type is not 'whisper')")


def count(src: SourceSpec, work: Path) -> int:
    """Rows of planned files exactly, of the others an estimate; refuses a folder Whisper would be needed for
    and no Whisper is named (said here, before a window starts, so the fix is a spec the work dir accepts)."""
    found = find_recordings(Path(src.path))
    model_path()  # VadUnavailable now, not after the first file is opened
    check_asr(src, found)
    store = PlanStore(work, src.label)
    total = 0
    for rec in found:
        plan = store.current(rec, journaled=False)
        total += len(plan.segments) if plan is not None else _estimate(rec)
    return total


def _estimate(rec: Recording) -> int:
    try:
        if rec.format is None or not stat.S_ISREG(os.stat(rec.path).st_mode):
            return 1
        return max(1, round(sf.info(str(rec.path)).duration / ESTIMATE_SLICE_S))
    except (OSError, RuntimeError, ValueError):
        return 1


class _Whisper:
    """The transcriber, loaded when the first slice needs it and closed when the source's rows end."""

    def __init__(self, src: SourceSpec, device: str) -> None:
        self.src, self.device = src, device
        self.model: WhisperTranscriber | None = None

    def get(self) -> WhisperTranscriber:
        if self.model is None:
            if self.src.asr is None:
                raise AsrUnavailable(f"source {self.src.label!r} needs transcripts and names no `asr` model")
            self.model = WhisperTranscriber(Path(self.src.asr), self.device)
        return self.model

    def close(self) -> None:
        if self.model is not None:
            self.model.close()
            self.model = None


def rows(src: SourceSpec, work: Path, start: int = 0, limits: Limits | None = None, device: str = "auto",
         show: bool = True, note: Note | None = None) -> Iterator[Item]:
    """Every row from `start` on. `show` draws the VAD and ASR progress bars on the terminal; `note` hears the
    same progress as text (the prepare heartbeat's message)."""
    root = Path(src.path)
    store = PlanStore(work, src.label)
    planner = Planner(root, limits or Limits(), show, note)
    whisper = _Whisper(src, device)
    n = 0
    try:
        for rec in find_recordings(root):
            plan = store.current(rec, journaled=n < start)
            if plan is None:
                plan = planner.plan(rec)
                store.save(plan)
            if n + len(plan.segments) > start:
                yield from FileRows(src, rec, plan, store, whisper, show, note).items(n, start)
            n += len(plan.segments)
    finally:
        whisper.close()


class FileRows:
    """One recording's rows from its plan, transcribing slices a fixed batch at a time as they are reached."""

    def __init__(self, src: SourceSpec, rec: Recording, plan: Plan, store: PlanStore, whisper: _Whisper,
                 show: bool, note: Note | None = None) -> None:
        self.src, self.rec, self.plan, self.whisper = src, rec, plan, whisper
        self.texts = store.transcripts(rec.rel) if plan.transcript == "asr" else None
        self.need = [k for k, s in enumerate(plan.segments) if s.reason is None and s.text is None
                     and self.seconds(s) <= WHISPER_WINDOW_S]
        self.position = {k: i for i, k in enumerate(self.need)}
        self.show, self.note = show, note
        self.bar: tqdm[Any] | None = None

    def seconds(self, seg: Segment) -> float:
        return (seg.end - seg.start) / self.plan.rate if self.plan.rate else 0.0

    def items(self, n0: int, start: int) -> Iterator[Item]:
        try:
            for k, seg in enumerate(self.plan.segments):
                if n0 + k >= start:
                    yield self.item(n0 + k, k, seg)
        finally:
            if self.bar is not None:
                self.bar.close()

    def orig_id(self, k: int) -> str:
        return row_id(self.rec.rel, k)

    def where(self, seg: Segment) -> str:
        if not self.plan.rate:
            return self.rec.rel
        return f"{self.rec.rel} {seg.start / self.plan.rate:.2f}-{seg.end / self.plan.rate:.2f} s"

    def item(self, n: int, k: int, seg: Segment) -> Item:
        if seg.reason is not None:
            return ImportReject(n, self.orig_id(k), seg.reason, f"{self.where(seg)}: {seg.detail}")
        meta: Meta = {"recording": self.rec.rel, "start_s": round(seg.start / self.plan.rate, 3),
                      "end_s": round(seg.end / self.plan.rate, 3), "transcript": self.plan.transcript}
        text = seg.text
        if text is None:
            if k not in self.position:
                return ImportReject(n, self.orig_id(k), "too_long", f"{self.where(seg)}: {self.seconds(seg):.1f} s, "
                                    f"longer than the {WHISPER_WINDOW_S:.0f} s Whisper hears: lower max_duration_s")
            heard = self.transcript(k)
            meta |= {"asr_confidence": round(heard.confidence, 4), "asr_avg_logprob": round(heard.avg_logprob, 4)}
            why = refusal(heard, self.src.asr_floor)
            if why is not None:
                return ImportReject(n, self.orig_id(k), "low_confidence", f"{self.where(seg)}: {why}")
            text = heard.text
        return SourceRow(n=n, orig_id=self.orig_id(k), speaker=self.rec.speaker or "", text=text,
                         audio=AudioRef("span", str(self.rec.path.resolve()), start=seg.start,
                                        frames=seg.end - seg.start), meta=meta)

    def transcript(self, k: int) -> Transcription:
        assert self.texts is not None
        if k not in self.texts.done:
            model = self.whisper.get()
            first = self.position[k] // model.batch * model.batch
            batch = self.need[first:first + model.batch]
            heard = model.transcribe([self.audio(self.plan.segments[j], model.rate) for j in batch])
            self.texts.add([Transcription(j, text, round(max(lp, MIN_LOGPROB), 6), round(compression_ratio(text), 4))
                            for j, (text, lp) in zip(batch, heard, strict=True)])
            self.progress()
        return self.texts.done[k]

    def progress(self) -> None:
        """The transcription bar: this recording's slices that have a transcript, of those that need one."""
        assert self.texts is not None
        done = sum(k in self.texts.done for k in self.need)
        if self.bar is None:
            self.bar = tqdm(total=len(self.need), desc=f"asr {self.rec.rel}", unit="slice", file=sys.stderr,
                            leave=False, dynamic_ncols=True, disable=not self.show)
        self.bar.update(done - self.bar.n)
        if self.note is not None:
            self.note(f"asr {self.rec.rel}: {done}/{len(self.need)} slices transcribed")

    def audio(self, seg: Segment, rate: int) -> np.ndarray:
        samples, native = read_span(self.rec.path.resolve(), seg.start, seg.end - seg.start)
        return resample(to_mono(samples), native, rate)
