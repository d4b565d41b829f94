"""One streaming pass over a long recording: speech probability and acoustic facts per 32 ms, nothing else kept.

A one-hour recording at 44.1 kHz stereo is 1.3 GB as float32; the slicer needs none of it at once. The
file is read in blocks of BLOCK_S seconds (libsndfile decodes WAV, FLAC, OGG/Vorbis/Opus and, where the
installed libsndfile has it, MP3, seeking in the file rather than holding it), each block mixed to mono,
resampled to 16 kHz by a streaming soxr resampler (whose state carries across blocks, so the result does
not depend on the block size's alignment) and fed to Silero VAD and the acoustics. What stays is one
speech probability and three facts per 512 samples at 16 kHz: under 2 MB for an hour. Slices are read back
from the file later, by frame range, one at a time (audio.read_span).

A file whose decoded frames fall short of its header's count is `TruncatedAudio`, as any corpus file is
(audio.py); a WAV's data chunk is checked against the file's size before the pass starts.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from tqdm import tqdm

from qwen_train.prepare.acoustics import Acoustics, Chunks
from qwen_train.prepare.audio import HEADER_COUNTED, TruncatedAudio, check_file_complete
from qwen_train.prepare.resample import to_mono
from qwen_train.prepare.vad import RATE, SileroVad

BLOCK_S = 10.0


@dataclass(frozen=True)
class Scan:
    """What one pass learned: the file's format and, per 32 ms chunk, speech probability and facts."""

    rate: int
    channels: int
    frames: int
    speech_prob: np.ndarray
    chunks: Chunks

    @property
    def duration_s(self) -> float:
        return self.frames / self.rate if self.rate else 0.0


def scan_file(path: Path, vad: SileroVad, label: str = "", show: bool = True,
              note: Callable[[str], None] | None = None) -> Scan:
    """Stream `path` once through the VAD and the acoustics; raise TruncatedAudio, or libsndfile's error.
    `note` hears how far the pass is after each block (for the heartbeat; `show` is the terminal's bar)."""
    check_file_complete(path)
    vad.reset()
    acoustics = Acoustics()
    probs: list[np.ndarray] = []
    parts: list[Chunks] = []
    with sf.SoundFile(str(path)) as handle:
        rate, channels, promised = int(handle.samplerate), int(handle.channels), int(handle.frames)
        kind = str(handle.format)
        stream = None if rate == RATE else soxr.ResampleStream(rate, RATE, 1, dtype="float32", quality="HQ")
        block = max(1, int(BLOCK_S * rate))
        bar = tqdm(total=round(promised / rate), desc=f"vad {label}", unit="s", file=sys.stderr, leave=False,
                   dynamic_ncols=True, mininterval=1.0, disable=not show)
        read = 0
        while True:
            audio = handle.read(block, dtype="float32", always_2d=True)
            last = len(audio) < block
            read += len(audio)
            mono = to_mono(audio)
            at16 = mono if stream is None else stream.resample_chunk(mono, last=last)
            probs.append(vad.feed(at16, last=last))
            parts.append(acoustics.feed(at16, last=last))
            bar.update(round(read / rate) - bar.n)
            if note is not None:
                note(f"vad {label}: {read / rate:.0f}/{promised / rate:.0f} s")
            if last:
                break
        bar.close()
    if 0 < promised < 1 << 40 and read < promised and kind in HEADER_COUNTED:
        raise TruncatedAudio(f"the {kind} header promises {promised} frames and {read} decode: "
                             "the file is cut short; fetch it again")
    return Scan(rate=rate, channels=channels, frames=read, speech_prob=np.concatenate(probs),
                chunks=Chunks.join(parts))
