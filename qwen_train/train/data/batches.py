"""Bundle rows -> laid-out batches with reference mels and speaker indices; and what the trainer asks of rows."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from qwen_tts.core.models.modeling_qwen3_tts import mel_spectrogram

from qwen_train.bundle.manifest import BundleError, Row, read_manifest, read_spk_id_map
from qwen_train.bundle.rowfiles import check_rows, read_codes, read_wave
from qwen_train.train.data.layout import RowLayout, SpecialIds, build_row, collate, row_length

TOKENIZE_CHUNK = 4096  # prompts per tokenizer call when counting lengths: bounded memory on a large bundle


class Rows(Protocol):
    """What the trainer asks of a split's rows: BundleData here, or the benchmarks' synthetic rows.

    A Protocol, so the full-size benchmark's rows (built on the GPU, no bundle) go through the very
    session, step and prefetcher a real run uses.
    """

    pad_multiple: int  # batch lengths are padded up to a multiple of this (0: to the longest row)

    def __len__(self) -> int: ...

    def lengths(self) -> list[int]:
        """Each row's talker sequence length as layout.build_row makes it (before padding).

        Exact, not estimated: length buckets sort by it, and a frame budget promises that no planned
        micro-batch exceeds it, which only holds if these are the lengths collate will see.
        """
        ...

    def row_name(self, index: int) -> str:
        """How an error names row `index` to the operator (its manifest id, for a bundle)."""
        ...

    def batch(self, indices: list[int]) -> tuple[dict[str, torch.Tensor], list[torch.Tensor], list[Row]]:
        """Collated tensors, the rows' reference mels, and the rows themselves."""
        ...


@dataclass(frozen=True)
class RunData:
    """The rows a run trains and evaluates on, and the bundle they came from (verified, by fingerprint)."""

    train: Rows
    eval: Rows
    bundle: Path
    fingerprint: str


@dataclass(frozen=True)
class Example:
    row: Row
    layout: RowLayout
    ref_mel: torch.Tensor


class BundleData:
    """Rows of one split with their tokenized text, codes and reference mels."""

    def __init__(self, root: Path, processor, ids: SpecialIds, language_id: int | None, split: str) -> None:
        self.root = root
        self.rows = [r for r in read_manifest(root) if r.split == split]
        check_rows(root, self.rows)
        self.speaker_index = read_spk_id_map(root)
        self._processor = processor
        self._ids = ids
        self._language_id = language_id
        self.pad_multiple = 0  # set from the session's Perf (a GPU speed setting)
        refs = sorted({r.ref_audio for r in self.rows})
        self._ref_index = {ref: i for i, ref in enumerate(refs)}

    def __len__(self) -> int:
        return len(self.rows)

    def lengths(self) -> list[int]:
        """Exact lengths: the prompts tokenized in chunks (no codes read: the manifest has the frame counts)."""
        lengths: list[int] = []
        for start in range(0, len(self.rows), TOKENIZE_CHUNK):
            chunk = self.rows[start : start + TOKENIZE_CHUNK]
            tokens = self._processor(text=[prompt(r.text) for r in chunk])["input_ids"]
            lengths += [row_length(len(t), r.frames, self._language_id is not None)
                        for t, r in zip(tokens, chunk, strict=True)]
        return lengths

    def row_name(self, index: int) -> str:
        return f"row {self.rows[index].id}"

    def example(self, index: int) -> Example:
        row = self.rows[index]
        text_ids = self._processor(text=prompt(row.text), return_tensors="pt")["input_ids"][0].tolist()
        codes = torch.from_numpy(read_codes(self.root, row.codes).astype(np.int64))
        layout = build_row(text_ids, codes, self._ids, self._language_id)
        return Example(row=row, layout=layout, ref_mel=self._ref_mel(row.ref_audio))

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one cache per bundle object is intended
    def _ref_mel(self, rel: str) -> torch.Tensor:
        return reference_mel(self.root, rel)

    def batch(self, indices: list[int]) -> tuple[dict[str, torch.Tensor], list[torch.Tensor], list[Row]]:
        """Collated tensors (with each row's dataset-scoped speaker index and reference id), mels, rows."""
        examples = [self.example(i) for i in indices]
        batch = collate([e.layout for e in examples], self.pad_multiple)
        batch["speaker_index"] = torch.tensor([self._speaker(e.row) for e in examples], dtype=torch.long)
        batch["ref_index"] = torch.tensor([self._ref_index[e.row.ref_audio] for e in examples], dtype=torch.long)
        return batch, [e.ref_mel for e in examples], [e.row for e in examples]

    def _speaker(self, row: Row) -> int:
        try:
            return self.speaker_index[row.speaker_id]
        except KeyError:
            raise BundleError(
                f"{self.root}: row {row.id} has speaker {row.speaker_id!r} missing from spk_id_map; rebuild the bundle"
            ) from None


def require_held_out_speakers(lane: str, data: BundleData) -> None:
    """language-expansion must stay a voice-cloning base, which only eval on never-trained voices can show.

    The daemon refuses such a launch too (governance); the trainer started by hand must not quietly train a
    language-expansion run on a bundle whose eval split is empty or holds no held-out speaker.
    """
    if lane != "language-expansion" or any(r.eval_kind == "held_out_speaker" for r in data.rows):
        return
    raise BundleError(f"bundle {data.root} has {len(data.rows)} eval rows and no held-out speaker: the "
                      "language-expansion lane needs held-out speakers; rebuild it with held-out speakers "
                      "(`qwen-train bundle build --held-out-speakers N`, or split.held_out_speakers in a prepare spec)")


def prompt(text: str) -> str:
    """The assistant prompt a row's text is tokenized in (layout.build_row splits it into role, body, tail)."""
    return f"<|im_start|>assistant\n{text}<|im_end|>\n<|im_start|>assistant\n"


def reference_mel(root: Path, rel: str) -> torch.Tensor:
    """The mel the speaker encoder expects, with the parameters inference uses, of the bundle's `rel`."""
    wav, rate = read_wave(root, rel, "reference audio")
    if rate != 24000:
        raise BundleError(f"{root / rel}: reference audio is {rate} Hz; the speaker encoder needs 24 kHz")
    return mel_from_wave(torch.from_numpy(wav.mean(axis=1)))


def mel_from_wave(wave: torch.Tensor) -> torch.Tensor:
    """(frames, 128) mel of a mono 24 kHz waveform, as inference computes it for the speaker encoder."""
    audio = wave.unsqueeze(0)
    mel = mel_spectrogram(
        audio, n_fft=1024, num_mels=128, sampling_rate=24000, hop_size=256, win_size=1024, fmin=0, fmax=12000
    )
    return mel.transpose(1, 2)[0]
