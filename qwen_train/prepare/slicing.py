"""Where a long recording is cut: utterances within the duration limits, cut in pauses, a little context kept.

A pure function of one scan (scan.py), the spec's duration limits and, when the user gave one, the
transcript: the same inputs give the same segments, so a plan made twice is the same plan. The result
is every segment of the recording in time order, in its own frames: slices to keep (with the given text,
if any) and stretches rejected with a reason (sound_events.py says how each is told).

With no timed transcript the VAD decides (`vad_segments`). Speech between rejected stretches or pauses
of HARD_PAUSE_S is a block, never sliced across. A block is cut at every pause of CUT_PAUSE_S (where
read speech ends its sentences); a piece shorter than min_duration_s is joined to a neighbour; a piece
longer than max_duration_s less the context is split at its longest inner pause (one leaving both sides
at least min_duration_s where there is one) until it fits. Speech running past the limit with no pause
the VAD marks is split at its softer dips (the probability under 0.5 for 96 ms); with none of those either
it is `too_long`, since it cannot be cut in a pause.

Every slice keeps CONTEXT_S of audio before and after its speech (all of it into a long silence or up to
the file's edge, at most half the way towards other speech, noise or music), so no onset or release is
clipped, two slices never share audio, and a slice takes in nothing of a stretch that was refused.

A timed transcript (SRT/VTT) decides the cuts instead: each cue is a slice, widened by the same context
(no further than half-way to the next cue), its text the cue's. A `.txt` makes the whole file one slice,
from its first speech to its last.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import numpy as np

from qwen_train.prepare.records import RejectReason
from qwen_train.prepare.scan import Scan
from qwen_train.prepare.sound_events import (
    SPEECH_ON,
    SPEECH_RANGE_DB,
    Span,
    chunks_of,
    gap_spans,
    judge,
    runs,
    speech_level,
    speech_mask,
)
from qwen_train.prepare.timed_text import Cue
from qwen_train.prepare.vad import CHUNK_S

CONTEXT_S = 0.25
CUT_PAUSE_S = 0.5
HARD_PAUSE_S = 2.0
SOFT_PAUSE_S = 0.096
QUIET_FLOOR_DB = -60.0  # non-speech under this is quiet (a pause, a silence), however soft the speech is


class Segment(msgspec.Struct, frozen=True):
    """A stretch of the recording in its own frames: a slice (reason None) or a reject and why."""

    start: int
    end: int
    reason: RejectReason | None = None
    detail: str = ""
    text: str | None = None  # the user's transcript of it, when one was given


@dataclass(frozen=True)
class Bounds:
    """The spec's duration limits, in chunks: a slice's speech plus its context must fit."""

    min_c: int
    budget_c: int

    @classmethod
    def of(cls, min_s: float, max_s: float) -> Bounds:
        return cls(chunks_of(min_s), max(1, int((max_s - 2 * CONTEXT_S) / CHUNK_S)))


Region = tuple[int, int]


def vad_segments(scan: Scan, min_s: float, max_s: float) -> list[Segment]:
    """Every segment of a recording the VAD slices: speech pieces and the rejected stretches between."""
    mask = speech_mask(scan.speech_prob)
    loud_db = max(speech_level(scan, mask) - SPEECH_RANGE_DB, QUIET_FLOOR_DB)
    bounds = Bounds.of(min_s, max_s)
    spans: list[Span] = []
    block: list[Region] = []
    edges = [(0, 0), *runs(mask), (len(mask), len(mask))]
    for (_, prev_end), (a, b) in zip(edges, edges[1:], strict=False):
        gap = gap_spans(scan, prev_end, a, loud_db)
        if gap or a - prev_end >= chunks_of(HARD_PAUSE_S):
            spans += pieces(scan, block, bounds)
            spans += gap
            block = []
        if b > a:
            block.append((a, b))
    spans += pieces(scan, block, bounds)
    return to_segments(scan, sorted(spans, key=lambda s: s.a))


def pieces(scan: Scan, block: list[Region], bounds: Bounds) -> list[Span]:
    """A block's regions cut into slices, each judged (music, two voices) and kept or rejected."""
    out: list[Span] = []
    for group in fit(scan, merge_short(at_pauses(block, chunks_of(CUT_PAUSE_S)), bounds), bounds):
        a, b = group[0][0], group[-1][1]
        if b - a > bounds.budget_c:
            out.append(Span(a, b, "too_long", f"{(b - a) * CHUNK_S:.1f} s of speech without a pause to cut in"))
            continue
        verdict = judge(scan, a, b)
        out.append(Span(a, b, *verdict) if verdict else Span(a, b))
    return out


def length(group: list[Region]) -> int:
    return group[-1][1] - group[0][0]


def at_pauses(block: list[Region], pause_c: int) -> list[list[Region]]:
    groups: list[list[Region]] = []
    for region in block:
        if groups and region[0] - groups[-1][-1][1] < pause_c:
            groups[-1].append(region)
        else:
            groups.append([region])
    return groups


def merge_short(groups: list[list[Region]], bounds: Bounds) -> list[list[Region]]:
    """Pieces under the minimum joined to the next piece (else the one before) where the sum still fits."""
    out = [list(g) for g in groups]
    i = 0
    while i < len(out):
        if length(out[i]) < bounds.min_c:
            if i + 1 < len(out) and out[i + 1][-1][1] - out[i][0][0] <= bounds.budget_c:
                out[i:i + 2] = [out[i] + out[i + 1]]
                continue
            if i > 0 and out[i][-1][1] - out[i - 1][0][0] <= bounds.budget_c:
                out[i - 1:i + 1] = [out[i - 1] + out[i]]
                i -= 1
                continue
        i += 1
    return out


def fit(scan: Scan, groups: list[list[Region]], bounds: Bounds) -> list[list[Region]]:
    """Pieces over the budget split at their longest inner pause, recursively, until each fits or cannot."""
    out: list[list[Region]] = []
    todo = list(reversed(groups))
    while todo:
        group = todo.pop()
        if length(group) <= bounds.budget_c:
            out.append(group)
            continue
        if len(group) == 1:
            softer = soft_regions(scan, group[0])
            if len(softer) == 1:
                out.append(group)  # no pause at all: too_long
            else:
                todo.append(softer)
            continue
        k = split_point(group, bounds)
        todo += [group[k:], group[:k]]
    return out


def split_point(group: list[Region], bounds: Bounds) -> int:
    """Index of the region after the longest pause, preferring cuts that leave both sides the minimum."""
    pauses = [(group[i][0] - group[i - 1][1], i) for i in range(1, len(group))]
    fair = [(p, i) for p, i in pauses if length(group[:i]) >= bounds.min_c and length(group[i:]) >= bounds.min_c]
    return max(fair or pauses)[1]


def soft_regions(scan: Scan, region: Region) -> list[Region]:
    """A region split where Silero's probability dips under SPEECH_ON for SOFT_PAUSE_S: the pauses it
    hysteresis bridged."""
    a, b = region
    dips = [(a + x, a + y) for x, y in runs(scan.speech_prob[a:b] < SPEECH_ON)
            if y - x >= chunks_of(SOFT_PAUSE_S) and x > 0 and a + y < b]
    out: list[Region] = []
    start = a
    for x, y in dips:
        out.append((start, x))
        start = y
    out.append((start, b))
    return out


def to_segments(scan: Scan, spans: list[Span]) -> list[Segment]:
    """Chunks to seconds to frames, each slice widened by its context (reach); a long silence gives up to a
    slice the context the slice took from it."""
    context = CONTEXT_S / CHUNK_S
    windows: list[tuple[float, float]] = []
    for i, s in enumerate(spans):
        if s.reason is not None:
            windows.append((s.a, s.b))
            continue
        before, after = reach(s, spans[i - 1] if i else None, spans[i + 1] if i + 1 < len(spans) else None,
                              len(scan.speech_prob))
        windows.append((s.a - min(context, before), s.b + min(context, after)))
    out: list[Segment] = []
    for i, (s, (a, b)) in enumerate(zip(spans, windows, strict=True)):
        if s.reason == "long_silence":
            a = max(a, windows[i - 1][1]) if i else a
            b = min(b, windows[i + 1][0]) if i + 1 < len(spans) else b
        out.append(segment(scan, a * CHUNK_S, b * CHUNK_S, s.reason, s.detail, s.text))
    return out


def reach(s: Span, before: Span | None, after: Span | None, n: int) -> tuple[float, float]:
    """How far a slice may widen, in chunks, before and after its speech: to the file's edge or into a long
    silence as far as it likes, towards anything else (speech, noise, music) half the way at most."""

    def towards(neighbour: Span | None, to_edge: float, gap: float) -> float:
        if neighbour is None:
            return to_edge
        return float(neighbour.b - neighbour.a) if neighbour.reason == "long_silence" else gap / 2

    return (towards(before, s.a, s.a - before.b if before else 0.0),
            towards(after, n - s.b, after.a - s.b if after else 0.0))


def segment(scan: Scan, start_s: float, end_s: float, reason: RejectReason | None = None, detail: str = "",
            text: str | None = None) -> Segment:
    start = min(max(0, round(start_s * scan.rate)), scan.frames)
    return Segment(start, min(max(start, round(end_s * scan.rate)), scan.frames), reason, detail, text)


def cue_segments(scan: Scan, cues: tuple[Cue, ...]) -> list[Segment]:
    """One slice per cue of a timed transcript, widened by the context no further than half-way to a neighbour."""
    out: list[Segment] = []
    for i, cue in enumerate(cues):
        if cue.start_s >= scan.duration_s:
            out.append(segment(scan, scan.duration_s, scan.duration_s, "bad_metadata",
                               f"the cue at {cue.start_s:.2f} s starts after the recording ends "
                               f"({scan.duration_s:.2f} s): is it the transcript of another file?", cue.text))
            continue
        before = cue.start_s - (cues[i - 1].end_s if i else 0.0)
        after = (cues[i + 1].start_s if i + 1 < len(cues) else scan.duration_s) - cue.end_s
        start_s = cue.start_s - max(0.0, min(CONTEXT_S, before / 2))
        end_s = cue.end_s + max(0.0, min(CONTEXT_S, after / 2))
        reason, detail = judge(scan, int(cue.start_s / CHUNK_S), int(np.ceil(cue.end_s / CHUNK_S))) or (None, "")
        out.append(segment(scan, start_s, end_s, reason, detail, cue.text))
    return out


def whole_segments(scan: Scan, text: str, max_s: float) -> list[Segment]:
    """A file with a .txt beside it is one utterance: from its first speech to its last, plus the context.
    Longer than the limit, it is `too_long` at once: a .txt cannot say where to cut."""
    found = runs(speech_mask(scan.speech_prob))
    a, b = (found[0][0], found[-1][1]) if found else (0, len(scan.speech_prob))
    reason, detail = judge(scan, a, b) or (None, "")
    if (b - a) * CHUNK_S + 2 * CONTEXT_S > max_s:
        reason, detail = "too_long", (f"{(b - a) * CHUNK_S:.1f} s of speech and one .txt for all of it, over "
                                      f"max_duration_s {max_s:g}: a .txt cannot say where to cut; give an .srt or "
                                      ".vtt with times, or remove the .txt and let Whisper transcribe the slices")
    return [segment(scan, a * CHUNK_S - CONTEXT_S, b * CHUNK_S + CONTEXT_S, reason, detail, text)]
