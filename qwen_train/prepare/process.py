"""One source row -> a journal entry: decode, validate, resample, store the 24 kHz wav.

Pure per row (no shared state), so rows can run in worker processes. The
stored wav is named by the sha256 of its bytes: a row re-done after a crash
writes the same file, and the code cache keys on the same hash. Audio that
stops before the frames its header promises is `truncated` (audio.py), never
a good row holding half of what its text says.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import wave
from pathlib import Path

import numpy as np
import soundfile as sf

from qwen_train.prepare.audio import TruncatedAudio, decode_bytes, read_audio_file, read_span, regular_file
from qwen_train.prepare.records import AudioRef, Processed, RejectReason, SourceRow
from qwen_train.prepare.resample import TARGET_RATE, to_24k, to_mono
from qwen_train.prepare.spec import Limits
from qwen_train.prepare.validate import check_audio, check_rate, check_text, normalize_text
from qwen_train.prepare.waxholm import SmpError, read_smp

_MEMORY_REPR = re.compile(r"<_io\.BytesIO object at 0x[0-9a-f]+>")


class DecodeError(ValueError):
    pass


def decode(ref: AudioRef) -> tuple[np.ndarray, int]:
    """(frames,) mono float32 and the native rate; TruncatedAudio for a file cut short, else DecodeError."""
    try:
        if ref.kind == "smp":
            audio, rate = read_smp(Path(ref.path))
        elif ref.kind == "span":
            audio, rate = read_span(regular_file(ref.path), ref.start, ref.frames)
        else:
            audio, rate = decode_bytes(ref.data if ref.kind == "bytes" else read_audio_file(ref.path))
    except TruncatedAudio as exc:
        raise TruncatedAudio(_named(exc, ref)) from None
    except (SmpError, RuntimeError, sf.LibsndfileError, OSError, ValueError) as exc:
        raise DecodeError(_named(exc, ref)) from None
    return to_mono(audio), int(rate)


def _named(exc: Exception, ref: AudioRef) -> str:
    """The error with the file's name for its full path: the detail travels into the rejects file.

    libsndfile names an in-memory source by its repr, whose address differs between runs; the rejects file
    is fingerprinted, so that becomes "the audio bytes".
    """
    text = _MEMORY_REPR.sub("the audio bytes", str(exc))
    return text.replace(ref.path, Path(ref.path).name) if ref.path else text


def wav_bytes(audio: np.ndarray) -> bytes:
    """24 kHz mono 16-bit PCM wav; deterministic bytes for equal samples.

    Through the stdlib `wave` writer: soundfile's writer into memory goes
    through Python callbacks and cost more than the resampling itself.
    """
    pcm = np.clip(np.round(audio * 32768.0), -32768, 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(TARGET_RATE)
        out.writeframes(pcm.tobytes())
    return buf.getvalue()


def store_wav(data: bytes, audio_dir: Path) -> str:
    """Write content-addressed (audio_dir/ab/abcd....wav), atomically; return the sha256."""
    sha = hashlib.sha256(data).hexdigest()
    dest = audio_dir / sha[:2] / f"{sha}.wav"
    if dest.is_file():
        return sha
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".wav.", dir=dest.parent)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, dest)
    return sha


def stored_wav(audio_dir: Path, sha: str) -> Path:
    return audio_dir / sha[:2] / f"{sha}.wav"


def process_row(source: str, row: SourceRow, limits: Limits, audio_dir: Path) -> Processed:
    text = normalize_text(row.text)
    base = Processed(source=source, n=row.n, orig_id=row.orig_id, speaker=row.speaker, text=text)
    verdict = check_text(text, limits)
    if verdict.reason:
        return _reject(base, verdict.reason, verdict.detail)
    if row.ref_audio is not None and not Path(row.ref_audio).is_file():
        return _reject(base, "missing_ref_audio", f"reference {Path(row.ref_audio).name} does not exist")
    if row.audio.kind != "bytes" and not Path(row.audio.path).exists():  # a FIFO exists: decode refuses it by name
        return _reject(base, "missing_audio", f"{Path(row.audio.path).name} does not exist")
    try:
        mono, rate = decode(row.audio)
    except TruncatedAudio as exc:
        return _reject(base, "truncated", str(exc))
    except DecodeError as exc:
        return _reject(base, "decode_error", str(exc))
    verdict, facts = check_audio(mono, rate, limits)
    if verdict.reason or facts is None:
        return _reject(base, verdict.reason or "decode_error", verdict.detail, rate)
    verdict = check_rate(text, facts, limits)
    if verdict.reason:
        return _reject(base, verdict.reason, verdict.detail, rate)
    sha = store_wav(wav_bytes(to_24k(mono, rate)), audio_dir)
    return Processed(
        source=source,
        n=row.n,
        orig_id=row.orig_id,
        speaker=row.speaker,
        text=text,
        audio_sha=sha,
        duration_s=round(facts.duration_s, 4),
        speech_s=round(facts.speech_s, 3),
        span_s=round(facts.span_s, 3),
        non_speech_ratio=round(facts.non_speech_ratio, 4),
        rate_in=rate,
        meta=row.meta,
    )


def _reject(base: Processed, reason: RejectReason, detail: str, rate: int = 0) -> Processed:
    return Processed(
        source=base.source, n=base.n, orig_id=base.orig_id, speaker=base.speaker, text=base.text,
        reason=reason, detail=detail, rate_in=rate,
    )
