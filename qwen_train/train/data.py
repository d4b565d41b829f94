"""Bundle rows -> laid-out batches, and the data cursor.

The order of an epoch is a pure function of (sampler seed, epoch): a seeded
permutation of the train rows, cut into batches. The cursor (epoch, position)
therefore locates any batch in O(1): resume computes that epoch's permutation
and slices, no batch before it is replayed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import torch
from qwen_tts.core.models.modeling_qwen3_tts import mel_spectrogram

from qwen_train.bundle.codes import read_mono_24k
from qwen_train.bundle.manifest import Row, read_manifest
from qwen_train.train.layout import RowLayout, SpecialIds, build_row, collate


class Cursor(msgspec.Struct, frozen=True):
    """Where the run is in the data: the next batch to draw."""

    epoch: int
    position: int
    seed: int
    batch_size: int
    world_size: int
    rows: int

    @property
    def batches_per_epoch(self) -> int:
        return batches_per_epoch(self.rows, self.batch_size * self.world_size)


def batches_per_epoch(rows: int, global_batch: int) -> int:
    return rows // global_batch


def epoch_order(seed: int, epoch: int, rows: int) -> list[int]:
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(rows, generator=gen).tolist()


def batch_indices(cursor: Cursor, rank: int = 0) -> list[int]:
    """Row indices of this rank's share of the global batch at `cursor`."""
    order = epoch_order(cursor.seed, cursor.epoch, cursor.rows)
    start = (cursor.position * cursor.world_size + rank) * cursor.batch_size
    return order[start : start + cursor.batch_size]


def advance(cursor: Cursor) -> Cursor:
    nxt = cursor.position + 1
    if nxt >= cursor.batches_per_epoch:
        return msgspec.structs.replace(cursor, epoch=cursor.epoch + 1, position=0)
    return msgspec.structs.replace(cursor, position=nxt)


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
        self._processor = processor
        self._ids = ids
        self._language_id = language_id

    def __len__(self) -> int:
        return len(self.rows)

    def example(self, index: int) -> Example:
        row = self.rows[index]
        prompt = f"<|im_start|>assistant\n{row.text}<|im_end|>\n<|im_start|>assistant\n"
        text_ids = self._processor(text=prompt, return_tensors="pt")["input_ids"][0].tolist()
        codes = torch.from_numpy(np.load(self.root / row.codes).astype(np.int64))
        layout = build_row(text_ids, codes, self._ids, self._language_id)
        return Example(row=row, layout=layout, ref_mel=self._ref_mel(row.ref_audio))

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one cache per bundle object is intended
    def _ref_mel(self, rel: str) -> torch.Tensor:
        return reference_mel(self.root / rel)

    def batch(self, indices: list[int]) -> tuple[dict[str, torch.Tensor], list[torch.Tensor], list[Row]]:
        examples = [self.example(i) for i in indices]
        return collate([e.layout for e in examples]), [e.ref_mel for e in examples], [e.row for e in examples]


def reference_mel(path: Path) -> torch.Tensor:
    """The mel the speaker encoder expects, with the parameters inference uses."""
    audio = torch.from_numpy(read_mono_24k(path)).unsqueeze(0)
    mel = mel_spectrogram(
        audio, n_fft=1024, num_mels=128, sampling_rate=24000, hop_size=256, win_size=1024, fmin=0, fmax=12000
    )
    return mel.transpose(1, 2)[0]
