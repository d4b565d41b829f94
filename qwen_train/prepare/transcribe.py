"""Slices of a recording transcribed by the ASR judge's Whisper path, with a confidence each, in batches, once.

The same Whisper the gate judges intelligibility with (qwen_train.gate.asr.WhisperAsr: KB-Whisper on
Hemma, the demo's tiny random Whisper in tests), decoded the same way: Swedish forced, transcription,
greedy, no timestamps, batches of BATCH. A transcript's confidence is the model's own: one more forward
pass, teacher-forced on the transcript it just produced, gives each token's log-probability; the mean
over the transcript's tokens and its end token is Whisper's `avg_logprob`, and its exponential (the
geometric mean of the token probabilities, in [0, 1]) is the row's `asr_confidence`. OpenAI's transcriber
treats an average log-probability under -1 as a failed decode and a text that gzip compresses more than
2.4 times as a decoder stuck in a loop; the spec's `min_asr_confidence` (default exp(-1) = 0.37, spec.py) applies
the first, and the second with it (0 keeps every transcript). Characters that are not printable (a byte
sequence Whisper's byte-level tokens left unfinished) are dropped from the text.

Transcripts are appended to a file per recording in the work dir as each batch finishes (one write per
batch, fsynced), so a window stopped mid-recording transcribes nothing twice. Batches are fixed by slice
index (the recording's first BATCH slices needing ASR, then the next BATCH, ...), not by where a window
started, so a resumed window decodes exactly the batches an uninterrupted one would.

The model is loaded when the first slice needs it and released (its GPU memory with it) when the source
is done: on a card shared with other services it holds its memory only while it transcribes.
"""

from __future__ import annotations

import math
import os
import zlib
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from qwen_train.safe_read import MiB, read_regular

MAX_COMPRESSION = 2.4  # Whisper's compression_ratio_threshold
WHISPER_WINDOW_S = 30.0  # what Whisper hears of a clip
CACHE_LIMIT = 256 * MiB


class AsrUnavailable(ValueError):
    """The source needs transcripts and names no usable Whisper model; the message says what to set."""


class Transcription(msgspec.Struct, frozen=True):
    """One slice's transcript: `k` is the slice's segment index in its recording's plan."""

    k: int
    text: str
    avg_logprob: float
    compression: float

    @property
    def confidence(self) -> float:
        return math.exp(self.avg_logprob)


def printable(text: str) -> str:
    return " ".join("".join(ch for ch in text if ch.isprintable()).split())


def compression_ratio(text: str) -> float:
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


def refusal(t: Transcription, floor: float) -> str | None:
    """Why a transcript is not kept under `floor`, or None when it is."""
    if floor <= 0:
        return None
    if t.confidence < floor:
        return f"ASR confidence {t.confidence:.3f} is under min_asr_confidence {floor:g}: {t.text[:80]!r}"
    if t.compression > MAX_COMPRESSION:
        return (f"the transcript repeats itself (gzip ratio {t.compression:.1f} > {MAX_COMPRESSION}): Whisper "
                f"looped, {t.text[:80]!r}")
    return None


class WhisperTranscriber:
    """The gate's WhisperAsr plus a confidence per transcript."""

    def __init__(self, model_dir: Path, device: str = "auto") -> None:
        import torch

        from qwen_train.gate.asr import BATCH, WhisperAsr
        from qwen_train.gate.target import asr_family

        if asr_family(model_dir) != "whisper":
            raise AsrUnavailable(f"{model_dir} is not a Whisper model directory (config.json's model_type): "
                                 "`asr` needs a Whisper-family model such as KBLab/kb-whisper-large")
        resolved = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.asr = WhisperAsr(model_dir, torch.device(resolved))
        self.rate = self.asr.rate
        self.batch = BATCH
        self.model = str(model_dir)

    def transcribe(self, audios: list[np.ndarray]) -> list[tuple[str, float]]:
        """(text, avg_logprob) for each mono clip at `self.rate`, one generate call and one scoring pass."""
        ids = self.asr.generate(audios)
        texts = self.asr.processor.batch_decode(ids, skip_special_tokens=True)
        return [(printable(str(t)), lp) for t, lp in zip(texts, self.avg_logprobs(audios, ids), strict=True)]

    def avg_logprobs(self, audios: list[np.ndarray], ids: Any) -> list[float]:
        """Mean log-probability of each transcript's tokens and its end token, teacher-forced."""
        import torch

        asr = self.asr
        features = asr.processor.feature_extractor(audios, sampling_rate=self.rate, return_tensors="pt")
        with torch.no_grad():
            logits = asr.model(input_features=features.input_features.to(asr.device, asr.dtype),
                               decoder_input_ids=ids[:, :-1].to(asr.device)).logits.float()
        logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None].to(asr.device))[..., 0].cpu()
        tokenizer = asr.processor.tokenizer
        return [_mean_over_text(row, logp[i], tokenizer) for i, row in enumerate(ids.tolist())]

    def close(self) -> None:
        """Drop the model and give its GPU memory back to the card's other tenants."""
        import torch

        device = self.asr.device
        del self.asr
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _mean_over_text(row: list[int], logp: Any, tokenizer: Any) -> float:
    """From the token after the forced prompt (<|notimestamps|>) to the first end token, inclusive."""
    prompt_end = tokenizer.convert_tokens_to_ids("<|notimestamps|>")
    eos = tokenizer.eos_token_id
    first = row.index(prompt_end) + 1 if prompt_end in row else 1
    last = next((i for i in range(first, len(row)) if row[i] == eos), len(row) - 1)
    values = logp[first - 1:last].tolist()
    return float(sum(values) / len(values)) if values else -math.inf


class TranscriptFile:
    """A recording's transcripts in the work dir: appended a batch at a time, read back on resume."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[int, Transcription] = {}
        if path.is_file():
            decoder = msgspec.json.Decoder(Transcription)
            for line in read_regular(path, CACHE_LIMIT, what="transcript cache", nofollow=True).splitlines():
                try:
                    t = decoder.decode(line)
                except msgspec.MsgspecError:
                    continue  # a torn line: its batch is transcribed again
                self.done.setdefault(t.k, t)

    def add(self, batch: list[Transcription]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as handle:
            if handle.tell() and not self._ends_whole():
                handle.write(b"\n")  # close a line torn by a kill, so it spoils no line of this batch
            handle.write(b"".join(msgspec.json.encode(t) + b"\n" for t in batch))
            handle.flush()
            os.fsync(handle.fileno())
        for t in batch:
            self.done.setdefault(t.k, t)

    def _ends_whole(self) -> bool:
        with self.path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"
