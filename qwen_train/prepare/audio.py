"""A corpus row's audio as bytes, and whether those bytes hold every frame their header promises.

Corpora arrive by download, copy and rsync, and a transfer cut short leaves a file whose header is
whole and whose data chunk is not. libsndfile decodes such a WAV without complaint (it shrinks the
frame count to the bytes present), so a half clip would pass as a good row whose text the audio
no longer says. So the bytes are checked against the header before decoding: a WAV's data chunk
(RIFF or RIFX) must hold the bytes it declares, and for formats whose frame count libsndfile reads
from the header (FLAC's STREAMINFO, AIFF's COMM) the decoded frames must reach it. A data size
that writers put in when they cannot seek back (`espeak-ng --stdout` writes 0x7ffff000, others 0
or 0xffffffff) promises nothing and is not held against the file.

Audio files are read through `safe_read`: a FIFO or device named as audio is refused, not opened.
"""

from __future__ import annotations

import io
import os
import stat
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

from qwen_train.safe_read import MiB, UnsafeFile, file_kind, read_regular

AUDIO_LIMIT = 512 * MiB  # far past any clip a TTS corpus holds (45 min of 48 kHz stereo 24-bit)
HEAD_BYTES = 64 * 1024  # where a WAV's chunks before `data` end, for any file a recorder writes
STREAMING_SIZE = 0x7FFFF000  # at or above: a streaming writer's placeholder, not a size
# Formats whose frame count libsndfile takes from the header rather than from the bytes present.
HEADER_COUNTED = frozenset({"FLAC", "AIFF", "CAF", "W64", "RF64", "WAVEX"})


class TruncatedAudio(ValueError):
    """Audio whose bytes stop before the frames its header promises; the message gives both counts."""


def read_audio_file(path: Path | str) -> bytes:
    """The file's bytes: a regular file within AUDIO_LIMIT, or UnsafeFile naming it."""
    return read_regular(path, AUDIO_LIMIT, what="audio file")


def _wav_data_chunk(data: bytes) -> tuple[int, int, int] | None:
    """(declared data bytes, bytes present after the chunk header, block align) of a RIFF/RIFX WAV, else None."""
    if len(data) < 12 or data[8:12] != b"WAVE" or data[:4] not in (b"RIFF", b"RIFX"):
        return None
    order = "<" if data[:4] == b"RIFF" else ">"
    offset, align = 12, 0
    while offset + 8 <= len(data):
        chunk = data[offset : offset + 4]
        (size,) = struct.unpack(f"{order}I", data[offset + 4 : offset + 8])
        body = offset + 8
        if chunk == b"fmt " and size >= 14 and body + 14 <= len(data):
            (align,) = struct.unpack(f"{order}H", data[body + 12 : body + 14])
        if chunk == b"data":
            return size, len(data) - body, align
        offset = body + size + (size & 1)  # chunks are padded to an even length
    return None


def check_wav_complete(data: bytes) -> None:
    """TruncatedAudio when a WAV's data chunk declares more bytes than the file holds."""
    found = _wav_data_chunk(data)
    if found is None:
        return  # not a WAV, or no data chunk: the decoder says what is wrong
    check_wav_complete_counts(*found)


def check_wav_complete_counts(declared: int, present: int, align: int) -> None:
    """TruncatedAudio when fewer bytes are present than declared (a streaming writer's size promises nothing)."""
    if declared == 0 or declared >= STREAMING_SIZE or present >= declared:
        return
    if align > 0:
        raise TruncatedAudio(f"the data chunk promises {declared // align} frames ({declared} bytes) and holds "
                             f"{present // align} ({present} bytes): the file is cut short; fetch it again")
    raise TruncatedAudio(f"the data chunk promises {declared} bytes and holds {present}: the file is cut short")


def regular_file(path: Path | str) -> Path:
    """`path` when it is a regular file; UnsafeFile naming it otherwise (a FIFO would block the decoder)."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeFile(f"audio file {path} is not a regular file ({file_kind(info.st_mode)}): refused")
    return Path(path)


def check_file_complete(path: Path) -> None:
    """TruncatedAudio when a WAV file's data chunk declares more bytes than the file holds, read from its head
    and its size alone: a long recording is never read whole to learn that it is whole."""
    with Path(path).open("rb") as handle:
        head = handle.read(HEAD_BYTES)
        size = os.fstat(handle.fileno()).st_size
    found = _wav_data_chunk(head)
    if found is None:
        return
    declared, present, align = found
    check_wav_complete_counts(declared, present + size - len(head), align)


def read_span(path: Path | str, start: int, frames: int) -> tuple[np.ndarray, int]:
    """(frames, channels) float32 of `frames` frames from frame `start`, and the rate: one slice of a long
    recording, sought to in the file; TruncatedAudio when the file ends before the span does."""
    with sf.SoundFile(str(path)) as handle:
        handle.seek(start)
        audio = handle.read(frames, dtype="float32", always_2d=True)
        rate = int(handle.samplerate)
    if len(audio) < frames:
        raise TruncatedAudio(f"frames {start}..{start + frames} were asked for and the file ends "
                             f"{frames - len(audio)} frames early: it changed or was cut short since it was sliced")
    return audio, rate


def decode_bytes(data: bytes) -> tuple[np.ndarray, int]:
    """(frames, channels) float32 and the rate, once the bytes are known to be whole.

    libsndfile's own errors (garbage, a header cut inside itself) pass through for the caller to report.
    """
    check_wav_complete(data)
    with sf.SoundFile(io.BytesIO(data)) as handle:
        promised, kind = handle.frames, handle.format
        audio = handle.read(dtype="float32", always_2d=True)
        rate = handle.samplerate
    if kind in HEADER_COUNTED and 0 < promised < 1 << 40 and len(audio) < promised:
        raise TruncatedAudio(f"the {kind} header promises {promised} frames and {len(audio)} decode: "
                             "the file is cut short; fetch it again")
    return audio, int(rate)
