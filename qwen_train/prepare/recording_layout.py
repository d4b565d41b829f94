"""A folder of the operator's own long recordings: which files, whose voice, which transcript beside each.

    recordings/                      recordings/
      anna/                            speakers.tsv      talk-1.flac<TAB>anna
        interview.flac                 talk-1.flac       talk-2.wav<TAB>bo
        interview.srt                  talk-2.wav
        chapter-01.mp3
      bo/
        reading.wav
        reading.txt

A recording's speaker is the first folder under the root it lies in, unless the root holds a
`speakers.tsv` naming it (`relative/path.ext<TAB>speaker` a line, `#` comments): a flat folder, or one
sorted by something other than voice, names its speakers there. A file at the root with no line there
has no speaker and is a reject (`bad_metadata`), not a guess. Each file is one voice; a file with several
speakers in turn needs diarization, which this does not do (sound_events.py rejects slices where a second
voice shows up).

Audio is whatever libsndfile reads: WAV, FLAC, OGG (Vorbis, Opus), AIFF, CAF, W64, and MP3 where the
installed libsndfile (1.1 or later) has it; any rate, any channel count. Formats it does not read (m4a,
aac, wma, video containers) are listed, not skipped: each is a `decode_error` row saying how to convert
it. The transcript beside a file is timed_text.beside's: `x.srt`, `x.vtt` or `x.txt`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from qwen_train.prepare.timed_text import beside, decode_text
from qwen_train.safe_read import MiB, read_regular

SPEAKERS_FILE = "speakers.tsv"
SPEAKERS_LIMIT = 16 * MiB
# suffix -> the libsndfile major format that reads it
READABLE = {".wav": "WAV", ".wave": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".oga": "OGG", ".opus": "OGG",
            ".mp3": "MP3", ".aif": "AIFF", ".aiff": "AIFF", ".aifc": "AIFF", ".caf": "CAF", ".w64": "W64",
            ".rf64": "RF64"}
UNREADABLE = frozenset({".m4a", ".aac", ".wma", ".mp4", ".m4b", ".webm", ".mkv", ".mov", ".amr", ".ac3"})
EXPECTED = ("one sub-folder per speaker holding audio files (wav, flac, ogg, mp3, ...), or audio files with a "
            f"{SPEAKERS_FILE} naming each one's speaker")


@dataclass(frozen=True)
class Recording:
    """One audio file of the folder: where it is, its path from the root, its speaker, its transcript."""

    path: Path
    rel: str
    speaker: str | None
    transcript: Path | None

    @property
    def format(self) -> str | None:
        """The libsndfile format that reads it, None for a format this libsndfile cannot read."""
        kind = READABLE.get(self.path.suffix.lower())
        return kind if kind is not None and kind in sf.available_formats() else None

    def unreadable_detail(self) -> str:
        suffix = self.path.suffix.lower()
        if suffix == ".mp3":
            return (f"libsndfile {sf.__libsndfile_version__} cannot read MP3 (1.1 and later can): convert it, e.g. "
                    f"ffmpeg -i {self.path.name} {self.path.stem}.flac")
        return (f"libsndfile does not read {suffix} files: convert it to FLAC or WAV, e.g. "
                f"ffmpeg -i {self.path.name} {self.path.stem}.flac")


def speakers_file(root: Path) -> dict[str, str]:
    """`speakers.tsv`'s path -> speaker lines; ValueError naming a line that is not `path<TAB>speaker`."""
    path = root / SPEAKERS_FILE
    if not path.exists():
        return {}
    out: dict[str, str] = {}
    text = decode_text(read_regular(path, SPEAKERS_LIMIT, what="speakers file"))
    for number, line in enumerate(text.splitlines(), 1):
        body = line.strip()
        if not body or body.startswith("#"):
            continue
        parts = [p.strip() for p in body.split("\t")]
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"{path} line {number}: {line!r} is not 'relative/path.ext<TAB>speaker'")
        out[Path(parts[0]).as_posix()] = parts[1]
    return out


def find_recordings(root: Path) -> list[Recording]:
    """Every audio file under `root` in path order; FileNotFoundError when there is none, naming the layout."""
    if not root.is_dir():
        raise FileNotFoundError(f"recordings: {root} is not a directory; point the source at the folder holding "
                                f"{EXPECTED}")
    named = speakers_file(root)
    found: list[Recording] = []
    for path in sorted(root.rglob("*")):
        suffix = path.suffix.lower()
        if (suffix not in READABLE and suffix not in UNREADABLE) or path.is_dir():
            continue
        rel = path.relative_to(root).as_posix()
        parts = Path(rel).parts
        speaker = named.get(rel) or (parts[0] if len(parts) > 1 else None)
        found.append(Recording(path, rel, speaker, beside(path)))
    if not found:
        raise FileNotFoundError(f"recordings: {root} holds no audio files: expected {EXPECTED}")
    return found
