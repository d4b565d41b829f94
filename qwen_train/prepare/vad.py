"""Silero VAD's speech probability per 32 ms of 16 kHz audio, through onnxruntime: no torch on this path.

The model ships inside the `silero-vad` wheel (`silero_vad/data/silero_vad.onnx`). The package's own
wrapper imports torch (its `__init__` does, even to reach the data folder), so the file is found by the
package's location without importing it, and run here the way the wrapper runs it: 512-sample chunks
at 16 kHz, each preceded by the last 64 samples of the one before, and a recurrent state of (2, 1, 128)
carried from chunk to chunk. The state makes a recording one sequence, so chunks are fed one at a
time; a chunk costs the model about a tenth of a millisecond on one core, so an hour (112,500 chunks)
takes seconds, not minutes (bench/recordings.py measures it).

One intra-op thread, as the wrapper sets: the model is too small to gain from more, and a single
thread keeps the probabilities bit-identical from run to run, which a resumed plan relies on.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

RATE = 16000
CHUNK = 512  # samples per probability: 32 ms
CONTEXT = 64  # samples of the previous chunk the model sees before each chunk
CHUNK_S = CHUNK / RATE
MODEL_FILE = "silero_vad.onnx"


class VadUnavailable(FileNotFoundError):
    """The silero-vad wheel (its ONNX model) or onnxruntime is not installed; the message says which."""


def model_path() -> Path:
    """The ONNX model inside the installed wheel, found without importing the package (which imports torch)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise VadUnavailable("the silero-vad package is not installed: install the train extra "
                             "(pip install -e '.[train]'), which ships the VAD model in its wheel")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / MODEL_FILE
    if not path.is_file():
        raise VadUnavailable(f"{path} is missing: reinstall silero-vad")
    return path


def _session(path: Path) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise VadUnavailable("onnxruntime is not installed: install the train extra") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class SileroVad:
    """A stream of 16 kHz mono samples in, one speech probability per whole 512-sample chunk out."""

    def __init__(self, path: Path | None = None) -> None:
        self.session = _session(path or model_path())
        self.reset()

    def reset(self) -> None:
        """Start a new recording: zero state and context, nothing held back."""
        self.state = np.zeros((2, 1, 128), dtype=np.float32)
        self.context = np.zeros((1, CONTEXT), dtype=np.float32)
        self.held = np.zeros(0, dtype=np.float32)
        self.rate = np.array(RATE, dtype=np.int64)

    def feed(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        """Probabilities for every whole chunk now available; `last` pads the tail chunk with zeros."""
        data = np.concatenate([self.held, samples.astype(np.float32, copy=False)])
        whole = len(data) // CHUNK
        if last and len(data) % CHUNK:
            data = np.pad(data, (0, CHUNK - len(data) % CHUNK))
            whole += 1
        out = np.empty(whole, dtype=np.float32)
        for i in range(whole):
            out[i] = self._chunk(data[i * CHUNK:(i + 1) * CHUNK])
        self.held = data[whole * CHUNK:].copy()
        return out

    def _chunk(self, chunk: np.ndarray) -> float:
        x = np.concatenate([self.context, chunk[None, :]], axis=1)
        prob, self.state = self.session.run(None, {"input": x, "state": self.state, "sr": self.rate})
        self.context = x[:, -CONTEXT:]
        return float(prob[0, 0])
