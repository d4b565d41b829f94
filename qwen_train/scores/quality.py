"""Quality: DNSMOS P.835 (SIG, BAK, OVRL) from the `speechmos` package, whose ONNX models ship in its wheel.

DNSMOS is Microsoft's non-intrusive predictor of the ITU-T P.835 listening test: SIG (the speech signal
itself: distortion, buzz, robotic artefacts), BAK (background noise) and OVRL (overall), each a MOS on 1-5,
from the audio alone, with no reference. That fits clones, which have no clean reference of their own. A
fine-tune that starts to buzz or hiss drops SIG or BAK before CER moves. `speechmos.dnsmos.run` takes 16 kHz
audio in [-1, 1] and scores it in 9 s windows (a shorter clip is repeated to fill one), the DNS Challenge's
own recipe; clones reach it through the project's one resampler (soxr). Every usable clone is scored, the
ones the VAD hears no speech in too: a buzz that is no speech is exactly what a low SIG says. Failed or
empty clones have no quality (they count in the end-of-speech share).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import msgspec
import numpy as np

from qwen_train.prepare.resample import resample

RATE = 16000


class Mos(msgspec.Struct, frozen=True):
    sig: float
    bak: float
    ovrl: float


class Dnsmos:
    """DNSMOS P.835 of one clip at a time."""

    def __init__(self) -> None:
        try:
            from speechmos import dnsmos
        except ImportError as exc:
            raise RuntimeError(f"quality scores need the speechmos package ({exc}): pip install speechmos") from None
        self._run = dnsmos.run
        self.name = f"speechmos {_version()} DNSMOS P.835 (sig_bak_ovr.onnx, {RATE} Hz via soxr)"

    def score(self, wave: np.ndarray, rate: int) -> Mos:
        audio = np.clip(resample(np.asarray(wave, dtype=np.float32), rate, RATE), -1.0, 1.0).astype(np.float32)
        result = self._run(audio, sr=RATE)
        return Mos(sig=round(float(result["sig_mos"]), 4), bak=round(float(result["bak_mos"]), 4),
                   ovrl=round(float(result["ovrl_mos"]), 4))


def _version() -> str:
    try:
        return version("speechmos")
    except PackageNotFoundError:
        return "(version unknown)"
