"""Where the speech is: Silero VAD's ONNX model (from the `silero-vad` wheel) run through onnxruntime. No torch.

Speaking rate compares how long a clone speaks with how long the real recording of the same text speaks,
so both need their speech measured the same way, pauses and leading or trailing silence left out (a clone
that rambles a second of noise after the sentence is not "slower"). Silero VAD is the detector people use
for this; its model ships inside the wheel, so it runs offline. It is called here directly through
onnxruntime (the wheel's own wrapper needs torch tensors), as its model expects: 16 kHz mono, windows of
512 samples each preceded by the previous 64 (its context), a recurrent state carried from window to window.

A window is speech when the model's probability reaches THRESHOLD; a segment ends after MIN_SILENCE_S
below THRESHOLD - 0.15 (the detector's usual hysteresis, so one weak window does not split a word), and
a segment shorter than MIN_SPEECH_S is a click, not speech. The speech seconds are the segments' total.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import numpy as np

from qwen_train.prepare.resample import resample

RATE = 16000
WINDOW = 512
CONTEXT = 64
THRESHOLD = 0.5
NEG_THRESHOLD = THRESHOLD - 0.15
MIN_SILENCE_S = 0.1
MIN_SPEECH_S = 0.25
MODEL = "silero_vad.onnx"


def model_path() -> str:
    """The ONNX model inside the silero-vad wheel; RuntimeError saying what to install when it is absent."""
    try:
        path = files("silero_vad").joinpath("data", MODEL)
    except ModuleNotFoundError:
        raise RuntimeError("speaking rate needs the silero-vad package (its ONNX model ships in the wheel): "
                           "pip install silero-vad") from None
    return str(path)


class SileroVad:
    """Speech probabilities and speech seconds of mono audio at any rate."""

    def __init__(self) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        self.session: Any = onnxruntime.InferenceSession(model_path(), sess_options=options,
                                                         providers=["CPUExecutionProvider"])
        self.name = f"silero-vad {_version()} ({MODEL}, onnxruntime, {RATE} Hz)"

    def probabilities(self, wave: np.ndarray, rate: int) -> np.ndarray:
        """One speech probability per 32 ms window (the last partial window zero-padded)."""
        audio = np.clip(resample(np.asarray(wave, dtype=np.float32), rate, RATE), -1.0, 1.0).astype(np.float32)
        if audio.size == 0:
            return np.zeros(0, np.float32)
        padded = np.pad(audio, (0, (-audio.size) % WINDOW))
        state = np.zeros((2, 1, 128), np.float32)
        context = np.zeros((1, CONTEXT), np.float32)
        sr = np.array(RATE, dtype=np.int64)
        out = np.empty(padded.size // WINDOW, np.float32)
        for i in range(out.size):
            chunk = padded[i * WINDOW:(i + 1) * WINDOW][None, :]
            prob, state = self.session.run(None, {"input": np.concatenate([context, chunk], axis=1),
                                                  "state": state, "sr": sr})
            out[i] = float(np.asarray(prob).reshape(-1)[0])
            context = chunk[:, -CONTEXT:]
        return out

    def speech_seconds(self, wave: np.ndarray, rate: int) -> float:
        return speech_seconds(self.probabilities(wave, rate))


def segments(probs: np.ndarray) -> list[tuple[int, int]]:
    """(first, end) window indices of each speech segment, by the hysteresis and minimum lengths above."""
    window_s = WINDOW / RATE
    min_silence = max(1, round(MIN_SILENCE_S / window_s))
    found: list[tuple[int, int]] = []
    start: int | None = None
    quiet = 0
    for i, p in enumerate(probs.tolist()):
        if start is None:
            if p >= THRESHOLD:
                start, quiet = i, 0
            continue
        quiet = quiet + 1 if p < NEG_THRESHOLD else 0
        if quiet >= min_silence:
            found.append((start, i - quiet + 1))
            start = None
    if start is not None:
        found.append((start, len(probs) - quiet))
    return [(a, b) for a, b in found if (b - a) * window_s >= MIN_SPEECH_S]


def speech_seconds(probs: np.ndarray) -> float:
    return sum(b - a for a, b in segments(probs)) * WINDOW / RATE


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("silero-vad")
    except PackageNotFoundError:
        return "(version unknown)"
