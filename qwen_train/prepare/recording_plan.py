"""A recording's plan: its segments (slices and rejects), made once by one streaming pass and kept in the work dir.

The journal numbers a source's rows; for recordings, a file's rows are its plan's segments, so the plan
is what lets a resumed window count past the files it finished without opening them, and start inside
the file it stopped in without scanning it again. A plan is written (atomically) before the first row of
its file is journaled and is keyed by the file's path, size and mtime and by PLAN_VERSION (the slicing
rules' version): a file replaced before any of its rows was journaled is planned afresh (its old
transcripts dropped with the old plan); one replaced after is an error, since its journaled rows describe
audio that is no longer there.

Whole-file problems (no speaker, a path leading out of the root, a FIFO, a format libsndfile does not
read, a transcript that does not parse, audio cut short or undecodable, a rate under the spec's minimum)
make a plan of one rejected segment: one row, with its reason.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import soundfile as sf

from qwen_train.atomic import atomic_write_bytes
from qwen_train.bundle.paths import PathEscape, resolve_inside
from qwen_train.prepare.audio import TruncatedAudio
from qwen_train.prepare.recording_layout import Recording
from qwen_train.prepare.records import RejectReason
from qwen_train.prepare.scan import scan_file
from qwen_train.prepare.slicing import Segment, cue_segments, vad_segments, whole_segments
from qwen_train.prepare.sound_events import speech_mask
from qwen_train.prepare.spec import Limits
from qwen_train.prepare.timed_text import Transcript, read_transcript
from qwen_train.prepare.transcribe import TranscriptFile
from qwen_train.prepare.vad import CHUNK_S, SileroVad
from qwen_train.safe_read import MiB, read_regular

PLAN_VERSION = 1
WORK_DIR = "recordings"
PLAN_LIMIT = 64 * MiB


def row_id(rel: str, k: int) -> str:
    """A segment's row id: the recording's path from the root and the segment's index in its plan."""
    return f"{rel}#{k:04d}"


class RecordingChanged(ValueError):
    """A recording whose rows are journaled was replaced since its plan was made."""


class Plan(msgspec.Struct, frozen=True):
    version: int
    recording: str
    size: int
    mtime_ns: int
    segments: list[Segment]
    rate: int = 0
    channels: int = 0
    frames: int = 0
    speech_s: float = 0.0
    transcript: str = "asr"  # where slice text comes from: asr, txt, srt or vtt

    @property
    def duration_s(self) -> float:
        return self.frames / self.rate if self.rate else 0.0


class PlanStore:
    """Plans and transcripts of one source, under <work>/recordings/<source>/, named by the recording's path."""

    def __init__(self, work: Path, label: str) -> None:
        self.dir = work / WORK_DIR / label

    def _path(self, rel: str, suffix: str) -> Path:
        return self.dir / f"{hashlib.sha256(rel.encode()).hexdigest()[:20]}{suffix}"

    def read(self, rel: str) -> Plan | None:
        try:
            raw = read_regular(self._path(rel, ".plan.json"), PLAN_LIMIT, what="recording plan", nofollow=True)
            plan = msgspec.json.decode(raw, type=Plan)
        except (FileNotFoundError, ValueError, msgspec.MsgspecError):
            return None
        return plan if plan.version == PLAN_VERSION and plan.recording == rel else None

    def current(self, rec: Recording, journaled: bool) -> Plan | None:
        """The plan for the file as it is now; None when there is none (or a stale one nothing relies on)."""
        plan = self.read(rec.rel)
        if plan is None or (plan.size, plan.mtime_ns) == _identity(rec.path):
            return plan
        if journaled:
            raise RecordingChanged(f"recording {rec.rel} changed since it was sliced and its rows are in the "
                                   "journal: put the original back, or start over in a new work_dir")
        return None

    def save(self, plan: Plan) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._path(plan.recording, ".asr.jsonl").unlink(missing_ok=True)  # transcripts of an older plan
        atomic_write_bytes(self._path(plan.recording, ".plan.json"), msgspec.json.encode(plan))

    def transcripts(self, rel: str) -> TranscriptFile:
        return TranscriptFile(self._path(rel, ".asr.jsonl"))


def _identity(path: Path) -> tuple[int, int]:
    try:
        info = path.stat()
    except OSError:
        return (-1, -1)
    return (info.st_size, info.st_mtime_ns)


@dataclass(frozen=True)
class Opened:
    """A recording that may be decoded: its real path, and the user's transcript of it if there is one."""

    real: Path
    transcript: Transcript | None


class Planner:
    """Makes plans; holds one VAD session for the source (made on first use)."""

    def __init__(self, root: Path, limits: Limits, show: bool = True,
                 note: Callable[[str], None] | None = None) -> None:
        self.root, self.limits, self.show, self.note = root, limits, show, note
        self._vad: SileroVad | None = None

    def plan(self, rec: Recording) -> Plan:
        size, mtime = _identity(rec.path)
        base = Plan(PLAN_VERSION, rec.rel, size, mtime, [])
        found = self._open(rec)
        if not isinstance(found, Opened):
            return msgspec.structs.replace(base, segments=[Segment(0, 0, *found)], transcript="")
        real, transcript = found.real, found.transcript
        if self._vad is None:
            self._vad = SileroVad()
        try:
            scan = scan_file(real, self._vad, rec.rel, self.show, self.note)
        except TruncatedAudio as exc:
            return msgspec.structs.replace(base, segments=[Segment(0, 0, "truncated", str(exc))], transcript="")
        except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
            detail = str(exc).replace(str(real), rec.path.name)
            return msgspec.structs.replace(base, segments=[Segment(0, 0, "decode_error", detail)], transcript="")
        facts = msgspec.structs.replace(base, rate=scan.rate, channels=scan.channels, frames=scan.frames,
                                        speech_s=round(float(speech_mask(scan.speech_prob).sum()) * CHUNK_S, 3))
        early = self._refuse(scan.rate, scan.frames)
        if early is not None:
            return msgspec.structs.replace(facts, segments=[Segment(0, 0, *early)], transcript="")
        if transcript is None:
            return msgspec.structs.replace(facts, segments=vad_segments(scan, self.limits.min_duration_s,
                                                                        self.limits.max_duration_s))
        if transcript.kind == "txt":
            whole = whole_segments(scan, transcript.text, self.limits.max_duration_s)
            return msgspec.structs.replace(facts, segments=whole, transcript="txt")
        return msgspec.structs.replace(facts, segments=cue_segments(scan, transcript.cues), transcript=transcript.kind)

    def _open(self, rec: Recording) -> Opened | tuple[RejectReason, str]:
        """The file's real path and its transcript, or why the file is one reject without being decoded."""
        if rec.speaker is None:
            return "bad_metadata", ("no speaker: a file at the folder's root needs a line in speakers.tsv "
                                    "('path<TAB>speaker'), or move it into a sub-folder named for its speaker")
        try:
            real = resolve_inside(self.root, rec.path)
        except PathEscape as exc:
            return "path_escape", f"{exc}: refused, a corpus stays inside its root"
        try:
            if not stat.S_ISREG(os.stat(real).st_mode):
                return "decode_error", "not a regular file: refused"
        except OSError as exc:
            return "missing_audio", f"cannot be read ({exc.strerror})"
        if rec.format is None:
            return "decode_error", rec.unreadable_detail()
        if rec.transcript is None:
            return Opened(real, None)
        try:
            return Opened(real, read_transcript(resolve_inside(self.root, rec.transcript)))
        except (ValueError, OSError) as exc:  # TimedTextError, UnsafeFile, PathEscape
            return "bad_metadata", f"{rec.transcript.name}: {exc}"

    def _refuse(self, rate: int, frames: int) -> tuple[RejectReason, str] | None:
        if frames == 0:
            return "empty_audio", "no samples"
        if rate < self.limits.min_sample_rate:
            return "sample_rate", f"{rate} Hz is below {self.limits.min_sample_rate} Hz; find a wider-band copy"
        return None
