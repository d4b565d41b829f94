"""The user's own transcripts of a recording: an SRT or WebVTT file of timed cues, or a plain .txt.

Beside `talk.flac` the importer looks for `talk.srt`, `talk.vtt`, then `talk.txt`. A timed transcript
decides the cuts: each cue is one slice, its text the row's text as given (cue markup such as `<i>`,
`<v Anna>` and SRT's `{\\an8}` removed, its lines joined by spaces). A `.txt` has no times, so it is the
text of the whole file: the file is one utterance (a clip already cut, with its transcript beside it),
trimmed to its speech by the VAD. Nothing here guesses where a .txt's sentences fall in a long file;
that needs the times an SRT/VTT carries.

Subtitle files come from many editors: UTF-8 with or without a byte-order mark is read as such, anything
else as Windows-1252 (what older Swedish SRTs are in). Times are `HH:MM:SS,mmm` (SRT) or `[HH:]MM:SS.mmm`
(VTT); either separator is accepted in either format. A cue that does not parse is an error naming its
line, since a transcript with a hole in it would shift nothing but silently lose text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from qwen_train.safe_read import MiB, read_regular

TRANSCRIPT_LIMIT = 16 * MiB  # a day of subtitles is a few MB
SUFFIXES = (".srt", ".vtt", ".txt")  # looked for in this order: a timed transcript wins
_TIME = re.compile(r"^\s*(?:(\d+):)?(\d{1,2}):(\d{2})[,.](\d{1,3})\s*$")
_TAG = re.compile(r"<[^>]*>|\{\\[^}]*\}")
_SPACE = re.compile(r"\s+")


class TimedTextError(ValueError):
    """A transcript file that cannot be read as what its suffix says; the message names the line."""


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class Transcript:
    """What a transcript file gave: cues (SRT/VTT) or one whole-file text (.txt); `kind` is the suffix."""

    kind: str
    cues: tuple[Cue, ...] = ()
    text: str = ""


def beside(audio: Path) -> Path | None:
    """The transcript file next to `audio`, timed ones first, or None."""
    for suffix in SUFFIXES:
        candidate = audio.with_suffix(suffix)
        if candidate.exists():
            return candidate
    return None


def decode_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def read_transcript(path: Path) -> Transcript:
    """Parse `path` by its suffix; TimedTextError (or UnsafeFile, a ValueError) when it cannot be used."""
    text = decode_text(read_regular(path, TRANSCRIPT_LIMIT, what="transcript"))
    kind = path.suffix.lower().lstrip(".")
    if kind == "txt":
        return Transcript(kind, text=clean(text))
    cues = parse_cues(text, path.name)
    if not cues:
        raise TimedTextError(f"{path.name} holds no cues ('start --> end' lines)")
    return Transcript(kind, cues=tuple(cues))


def clean(text: str) -> str:
    """Markup out, whitespace collapsed."""
    return _SPACE.sub(" ", _TAG.sub(" ", text)).strip()


def seconds(stamp: str, where: str) -> float:
    match = _TIME.match(stamp)
    if match is None:
        raise TimedTextError(f"{where}: {stamp.strip()!r} is not a time (HH:MM:SS,mmm or MM:SS.mmm)")
    hours, minutes, secs, millis = match.groups()
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(secs) + int(millis.ljust(3, "0")) / 1000


def parse_cues(text: str, name: str) -> list[Cue]:
    """Every cue of an SRT or WebVTT body, in time order. Blocks without a `-->` line (VTT's header, NOTE,
    STYLE and REGION blocks, an SRT's stray counter) carry no speech and are passed over."""
    cues: list[Cue] = []
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    i = 0
    while i < len(lines):
        if "-->" not in lines[i]:
            i += 1
            continue
        where = f"{name} line {i + 1}"
        left, right = lines[i].split("-->", 1)
        start, end = seconds(left, where), seconds(right.split()[0] if right.split() else "", where)
        if end <= start:
            raise TimedTextError(f"{where}: the cue ends ({end:.3f} s) before it starts ({start:.3f} s)")
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip():
            body.append(lines[i])
            i += 1
        cues.append(Cue(start, end, clean(" ".join(body))))
    return sorted(cues, key=lambda c: (c.start_s, c.end_s))
