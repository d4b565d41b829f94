"""The embedded Swedish demo corpus: real speech synthesised by espeak-ng.

Several espeak-ng voice variants with their own pitch and rate stand in for
different speakers. Each clip is resampled by sox to 24 kHz mono 16-bit (the
rate Qwen3-TTS's speech tokenizer and speaker encoder expect). The output is a
JSONL in the upstream fine-tuning shape (`audio`, `text`, `ref_audio`) plus a
`speaker` field, so the bundle builder reads it like any other source.
"""

from __future__ import annotations

import shutil
import subprocess
import unicodedata
from pathlib import Path

import msgspec
import soundfile as sf

from qwen_train.atomic import atomic_write_bytes
from qwen_train.corpus.sentences import SENTENCES
from qwen_train.safe_read import MiB, UnsafeFile, read_regular

TARGET_RATE = 24000
CORPUS_LIMIT = 256 * MiB  # a row is ~200 bytes; the demo corpus is 60 rows


class Voice(msgspec.Struct, frozen=True):
    speaker: str
    variant: str
    pitch: int
    speed: int


VOICES: tuple[Voice, ...] = (
    Voice("astrid", "f2", 70, 150),
    Voice("bengt", "m1", 30, 140),
    Voice("cecilia", "f4", 85, 165),
    Voice("dag", "m3", 45, 125),
    Voice("ebba", "f1", 60, 175),
)


class CorpusRow(msgspec.Struct, frozen=True):
    """One utterance as a source row (upstream JSONL fields plus speaker)."""

    id: str
    speaker: str
    text: str
    audio: str
    ref_audio: str
    sample_rate: int
    duration_s: float


class CorpusError(RuntimeError):
    """The demo corpus cannot be generated here; the message says what to install."""


def _require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise CorpusError(f"{tool} not found: install it with `apt-get install {package}`")
    return path


def synthesize(text: str, voice: Voice, out_path: Path) -> None:
    """espeak-ng -> 22.05 kHz wav -> sox -> 24 kHz mono 16-bit wav."""
    espeak = _require("espeak-ng", "espeak-ng")
    sox = _require("sox", "sox")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    raw = out_path.with_suffix(".raw.wav")
    cmd = [espeak, "-v", f"sv+{voice.variant}", "-p", str(voice.pitch), "-s", str(voice.speed)]
    subprocess.run([*cmd, "-w", str(raw), text], check=True, capture_output=True)
    tmp = out_path.with_suffix(".tmp.wav")
    subprocess.run(
        [sox, str(raw), "-r", str(TARGET_RATE), "-c", "1", "-b", "16", str(tmp), "rate", "-v"],
        check=True,
        capture_output=True,
    )
    raw.unlink()
    tmp.replace(out_path)


def generate_corpus(out_dir: Path, per_speaker: int = 12, voices: tuple[Voice, ...] = VOICES) -> Path:
    """Write wavs and `corpus.jsonl`; return the JSONL path.

    Speaker k reads sentences k, k+1, ... (wrapping) so speakers share some
    texts and differ in others, like a real multi-speaker read corpus.
    """
    if per_speaker > len(SENTENCES):
        raise CorpusError(f"per_speaker={per_speaker} exceeds the {len(SENTENCES)} sentences available")
    rows: list[CorpusRow] = []
    for k, voice in enumerate(voices):
        speaker_rows = _speak_voice(out_dir, k, voice, per_speaker)
        rows.extend(speaker_rows)
    lines = b"".join(msgspec.json.encode(r) + b"\n" for r in rows)
    manifest = out_dir / "corpus.jsonl"
    atomic_write_bytes(manifest, lines)
    return manifest


def _speak_voice(out_dir: Path, k: int, voice: Voice, per_speaker: int) -> list[CorpusRow]:
    rows: list[CorpusRow] = []
    for j in range(per_speaker):
        text = unicodedata.normalize("NFC", SENTENCES[(k * 7 + j) % len(SENTENCES)])
        utt_id = f"{voice.speaker}-{j:03d}"
        wav = out_dir / "wavs" / voice.speaker / f"{utt_id}.wav"
        if not wav.exists():
            synthesize(text, voice, wav)
        info = sf.info(str(wav))
        rows.append(
            CorpusRow(
                id=utt_id,
                speaker=voice.speaker,
                text=text,
                audio=str(wav.relative_to(out_dir)),
                ref_audio=str(wav.relative_to(out_dir)),
                sample_rate=int(info.samplerate),
                duration_s=round(float(info.duration), 3),
            )
        )
    # Each speaker's reference is its own first clip (anchors are chosen again in the bundle).
    first = rows[0].audio
    return [msgspec.structs.replace(r, ref_audio=first) for r in rows]


def read_corpus(path: Path) -> list[CorpusRow]:
    """Parse a corpus JSONL (a regular file within its bound, read without blocking); a bad line is named by number."""
    try:
        raw = read_regular(path, CORPUS_LIMIT, what="corpus manifest")
    except UnsafeFile as exc:
        raise CorpusError(str(exc)) from None
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read ({exc.strerror})") from None
    rows: list[CorpusRow] = []
    for n, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(msgspec.json.decode(line, type=CorpusRow))
        except msgspec.MsgspecError as exc:
            raise CorpusError(f"{path}:{n}: malformed corpus row: {exc}") from None
    return rows
