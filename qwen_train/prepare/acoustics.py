"""Three facts per 32 ms chunk of 16 kHz audio, beside Silero's speech probability: level, top peak, pitch.

The VAD says speech or not; it does not say what the rest is, and it says speech for singing and for two
people talking at once. What a recording's slicer needs beyond it, each measured on the stream as it
passes (so an hour is never held decoded), each cheap enough to run at hundreds of times real time:

* level: the chunk's RMS in dBFS. A stretch the VAD calls non-speech is a pause or a long silence when it
  is quiet, and noise or music when it is loud (near the recording's speech level).
* top peak: the strongest spectral bin between 100 Hz and 4 kHz (64 ms Hann window, 15.6 Hz bins).
  Music holds notes: the same peak, to a bin, for 0.4 s and more. Speech moves its harmonics with every
  syllable; even espeak-ng's flat synthetic vowels hold a bin for under 0.35 s.
* pitch: log2 f0 of voiced chunks by YIN (de Cheveigné and Kawahara 2002: the normalised squared difference
  over 20 ms, the first dip under 0.2, 70-400 Hz), NaN when unvoiced or quiet. One voice keeps its pitch in
  one register; two voices at once (or a second speaker in the same slice) put the track in two.

The frames look back from each chunk's end (the chunk and the one before it), so a chunk's facts need no
audio after it and the stream is cut anywhere without changing them.
"""

from __future__ import annotations

import numpy as np

from qwen_train.prepare.vad import CHUNK, RATE

FRAME = 1024  # spectrum window: this chunk and the one before
BIN_HZ = RATE / FRAME
PEAK_BAND = (round(100 / BIN_HZ), round(4000 / BIN_HZ))
YIN_WINDOW = 320  # 20 ms integration window
LAG_MIN, LAG_MAX = RATE // 400, RATE // 70  # 400 Hz .. 70 Hz
YIN_THRESHOLD = 0.2  # YIN's absolute threshold on the normalised difference
VOICED_MAX = 0.3  # a dip above this is no pitch at all
QUIET_DB = -60.0  # below: no peak, no pitch
_WINDOW = np.hanning(FRAME)


class Chunks:
    """Per-chunk facts, as parallel arrays (one entry per 512-sample chunk)."""

    def __init__(self, level_db: np.ndarray, peak_bin: np.ndarray, log_f0: np.ndarray) -> None:
        self.level_db = level_db
        self.peak_bin = peak_bin
        self.log_f0 = log_f0

    @classmethod
    def empty(cls) -> Chunks:
        return cls(np.zeros(0, np.float32), np.zeros(0, np.int16), np.zeros(0, np.float32))

    @classmethod
    def join(cls, parts: list[Chunks]) -> Chunks:
        if not parts:
            return cls.empty()
        return cls(np.concatenate([p.level_db for p in parts]), np.concatenate([p.peak_bin for p in parts]),
                   np.concatenate([p.log_f0 for p in parts]))

    def __len__(self) -> int:
        return len(self.level_db)


class Acoustics:
    """A 16 kHz stream in, `Chunks` for every whole chunk out; aligned with SileroVad.feed chunk for chunk."""

    def __init__(self) -> None:
        self.history = np.zeros(FRAME - CHUNK, dtype=np.float32)
        self.held = np.zeros(0, dtype=np.float32)

    def feed(self, samples: np.ndarray, last: bool = False) -> Chunks:
        data = np.concatenate([self.held, samples.astype(np.float32, copy=False)])
        whole = len(data) // CHUNK
        if last and len(data) % CHUNK:
            data = np.pad(data, (0, CHUNK - len(data) % CHUNK))
            whole += 1
        if whole == 0:
            self.held = data
            return Chunks.empty()
        stream = np.concatenate([self.history, data[: whole * CHUNK]]).astype(np.float64)
        starts = np.arange(whole) * CHUNK
        frames = stream[starts[:, None] + np.arange(FRAME)[None, :]]
        self.history = data[whole * CHUNK - (FRAME - CHUNK): whole * CHUNK].copy()
        self.held = data[whole * CHUNK:].copy()
        return measure(frames)


def measure(frames: np.ndarray) -> Chunks:
    """(chunks, FRAME) float64 frames, each ending at its chunk's end -> level, top peak, pitch."""
    level = 10.0 * np.log10(np.mean(np.square(frames[:, -CHUNK:]), axis=1) + 1e-12)
    quiet = level < QUIET_DB
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=1)) ** 2
    lo, hi = PEAK_BAND
    peak = (np.argmax(power[:, lo:hi], axis=1) + lo).astype(np.int16)
    peak[quiet] = -1
    log_f0 = yin_log_f0(frames[:, -(YIN_WINDOW + LAG_MAX):])
    log_f0[quiet] = np.nan
    return Chunks(level.astype(np.float32), peak, log_f0.astype(np.float32))


def difference(frames: np.ndarray) -> np.ndarray:
    """YIN's normalised difference d(tau) in [0, 2] for tau = 0..LAG_MAX, windows of YIN_WINDOW samples.

    d(tau) = sum (x[t] - x[t+tau])^2 / sum (x[t]^2 + x[t+tau]^2): 0 for a signal periodic in tau, 1 for noise.
    The cross term through one FFT per frame, the energies through cumulative sums.
    """
    head = frames[:, :YIN_WINDOW]
    size = 1 << int(np.ceil(np.log2(frames.shape[1] + YIN_WINDOW)))
    cross = np.fft.irfft(np.conj(np.fft.rfft(head, size, axis=1)) * np.fft.rfft(frames, size, axis=1), size,
                         axis=1)[:, : LAG_MAX + 1]
    energy = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(np.square(frames), axis=1)], axis=1)
    lags = np.arange(LAG_MAX + 1)
    moved = energy[:, lags + YIN_WINDOW] - energy[:, lags]
    own = energy[:, YIN_WINDOW:YIN_WINDOW + 1]
    result: np.ndarray = (own + moved - 2.0 * cross) / (own + moved + 1e-12)
    return result


def yin_log_f0(frames: np.ndarray) -> np.ndarray:
    """log2 f0 per frame: the first local minimum of d under YIN_THRESHOLD, else the global one; NaN when
    even that is above VOICED_MAX (no periodicity to speak of)."""
    d = difference(frames)[:, LAG_MIN:]
    inner = (d[:, 1:-1] <= d[:, :-2]) & (d[:, 1:-1] <= d[:, 2:]) & (d[:, 1:-1] < YIN_THRESHOLD)
    has = inner.any(axis=1)
    lag = np.where(has, np.argmax(inner, axis=1) + 1, np.argmin(d, axis=1))
    dip = d[np.arange(len(d)), lag]
    hz = RATE / (lag + LAG_MIN)
    return np.where(dip <= VOICED_MAX, np.log2(hz), np.nan)


def sustained(peak_bin: np.ndarray, min_chunks: int) -> np.ndarray:
    """True where the top peak stays within one bin of the chunk before for at least `min_chunks` chunks."""
    n = len(peak_bin)
    if n == 0:
        return np.zeros(0, dtype=bool)
    steady = np.zeros(n, dtype=bool)
    steady[1:] = (np.abs(np.diff(peak_bin.astype(np.int32))) <= 1) & (peak_bin[1:] >= 0)
    # runs of steady chunks; a run of k steady steps spans k + 1 chunks
    edges = np.flatnonzero(np.diff(np.concatenate([[0], steady.astype(np.int8), [0]])))
    out = np.zeros(n, dtype=bool)
    for begin, end in zip(edges[::2], edges[1::2], strict=True):
        if end - begin + 1 >= min_chunks:
            out[begin - 1:end] = True
    return out


def two_registers(log_f0: np.ndarray, min_share: float) -> tuple[float, float, float, float]:
    """The best split of a pitch track into a low and a high register: (low Hz, high Hz, the smaller side's
    share, separation in pooled standard deviations). Only splits leaving each side `min_share` are tried."""
    values = np.sort(log_f0[np.isfinite(log_f0)]).astype(np.float64)
    n = len(values)
    first, last = int(np.ceil(min_share * n)), int(np.floor((1 - min_share) * n))
    if n < 10 or first < 1 or last <= first:
        return (0.0, 0.0, 0.0, 0.0)
    total, squares = np.cumsum(values), np.cumsum(np.square(values))
    k = np.arange(first, last + 1)
    low_mean = total[k - 1] / k
    high_mean = (total[-1] - total[k - 1]) / (n - k)
    within = (squares[k - 1] - k * low_mean**2 + (squares[-1] - squares[k - 1]) - (n - k) * high_mean**2) / n
    score = (high_mean - low_mean) / np.sqrt(np.maximum(within, 1e-9))
    best = int(np.argmax(score))
    cut = int(k[best])
    return (float(2 ** low_mean[best]), float(2 ** high_mean[best]), min(cut, n - cut) / n, float(score[best]))
