"""What a recordings source came to: hours in, hours kept, slices, rejects by reason, per speaker.

Printed when the source's last row is journaled, and written beside its plans as `summary.json`, so an
operator who brought ten hours of audio learns at once that three of them were music beds or that one
speaker's slices mostly failed the confidence floor, without reading the journal. Built from the plans
(each segment's length in the recording's own frames, so a reject's hours count as well as a slice's)
and the source's journal entries (which slices process.py kept). The bundle's stats carry the same
totals per source under `layout` (`notes`).
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from qwen_train.atomic import atomic_write_bytes
from qwen_train.prepare.recording_layout import find_recordings
from qwen_train.prepare.recording_plan import Plan, PlanStore, row_id
from qwen_train.prepare.records import Processed
from qwen_train.prepare.spec import SourceSpec

SUMMARY = "summary.json"


@dataclass
class Tally:
    """One speaker's (or the source's) sums, in seconds."""

    files: int = 0
    audio_s: float = 0.0
    speech_s: float = 0.0
    slices: int = 0
    kept: int = 0
    kept_s: float = 0.0
    rejects: Counter[str] = field(default_factory=Counter)
    reject_s: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add_plan(self, plan: Plan) -> None:
        self.files += 1
        self.audio_s += plan.duration_s
        self.speech_s += plan.speech_s
        self.slices += sum(s.reason is None for s in plan.segments)

    def as_dict(self) -> dict[str, Any]:
        return {"files": self.files, "hours_in": hours(self.audio_s), "speech_hours": hours(self.speech_s),
                "slices": self.slices, "kept": self.kept, "hours_kept": hours(self.kept_s),
                "rejected_by_reason": dict(sorted(self.rejects.items())),
                "rejected_hours_by_reason": {k: hours(v) for k, v in sorted(self.reject_s.items())}}

    def line(self, name: str) -> str:
        rejected = ", ".join(f"{reason} {n} ({span(self.reject_s[reason])})"
                             for reason, n in self.rejects.most_common())
        return (f"{name}: {self.files} file(s), {span(self.audio_s)} in ({span(self.speech_s)} speech), "
                f"{self.slices} slice(s), {self.kept} kept ({span(self.kept_s)})"
                + (f"; rejected {sum(self.rejects.values())}: {rejected}" if self.rejects else ""))


def span(seconds: float) -> str:
    """Hours for hours of audio, minutes or seconds for less."""
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def hours(seconds: float) -> float:
    return round(seconds / 3600, 4)


def _plans(src: SourceSpec, work: Path) -> list[tuple[str, Plan]]:
    """(speaker, plan) of every recording that has a plan, in path order."""
    store = PlanStore(work, src.label)
    out: list[tuple[str, Plan]] = []
    for rec in find_recordings(Path(src.path)):
        plan = store.read(rec.rel)
        if plan is not None:
            out.append((rec.speaker or "(no speaker)", plan))
    return out


def tallies(src: SourceSpec, work: Path, entries: list[Processed]) -> tuple[Tally, dict[str, Tally]]:
    """The source's tally and each speaker's, from the plans and the journal entries of this source."""
    total: Tally = Tally()
    speakers: defaultdict[str, Tally] = defaultdict(Tally)
    seconds: dict[str, float] = {}
    owner: dict[str, str] = {}
    for speaker, plan in _plans(src, work):
        for tally in (total, speakers[speaker]):
            tally.add_plan(plan)
        for k, seg in enumerate(plan.segments):
            seconds[row_id(plan.recording, k)] = (seg.end - seg.start) / plan.rate if plan.rate else 0.0
            owner[row_id(plan.recording, k)] = speaker
    for e in entries:
        length = seconds.get(e.orig_id, 0.0)
        for tally in (total, speakers[owner.get(e.orig_id, "(no speaker)")]):
            if e.reason is None:
                tally.kept += 1
                tally.kept_s += e.duration_s
            else:
                tally.rejects[e.reason] += 1
                tally.reject_s[e.reason] += length
    return total, dict(sorted(speakers.items()))


def summary(src: SourceSpec, work: Path, entries: list[Processed]) -> str:
    """Print the source's summary to stderr, write it as JSON beside the plans, and return its text."""
    total, speakers = tallies(src, work, entries)
    text = "\n".join([total.line(f"recordings {src.label!r}"), *(f"  {t.line(s)}" for s, t in speakers.items())])
    record = {"source": src.label, **total.as_dict(), "per_speaker": {s: t.as_dict() for s, t in speakers.items()}}
    store = PlanStore(work, src.label)
    store.dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(store.dir / SUMMARY, msgspec.json.format(msgspec.json.encode(record), indent=2) + b"\n")
    print(text, file=sys.stderr)
    return text


def notes(src: SourceSpec, work: Path) -> dict[str, int]:
    """Layout totals for the bundle's stats (whole seconds, since stats' layout entries are counts)."""
    total = Tally()
    asr = 0
    for _, plan in _plans(src, work):
        total.add_plan(plan)
        asr += sum(s.reason is None and s.text is None for s in plan.segments) if plan.transcript == "asr" else 0
    return {"recordings": total.files, "audio_s": round(total.audio_s), "speech_s": round(total.speech_s),
            "slices": total.slices, "slices_for_asr": asr}
