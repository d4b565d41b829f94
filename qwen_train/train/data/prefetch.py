"""Batches prepared ahead in worker processes, in exactly the order the cursor will ask for them.

Tokenising, reading codes and computing reference mels in the step costs the
GPU idle time (a large share at batch 32, measured upstream). The cursor
makes the future known: from any position, the next batches are the cursor
walked forward, skipping the batches the guard has marked. Workers prepare
those; the step takes one only if it is the batch it was about to draw
(epoch, position and indices all match), otherwise (after a rollback, a new
skip) the queue is dropped and rebuilt from where the step is. A batch is a
pure function of its indices, so what is trained is identical either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from qwen_train.train.data.batches import Rows
from qwen_train.train.data.cursor import Cursor, Lengths, advance, batch_indices

Key = tuple[int, int, tuple[int, ...]]
Prepared = tuple[Key, dict[str, torch.Tensor], list[torch.Tensor]]


class _Batches(Dataset[Prepared]):
    """Map-style view whose 'index' is a whole batch key; a worker builds the collated batch."""

    def __init__(self, data: Rows) -> None:
        self.data = data

    def __getitem__(self, key: Key) -> Prepared:
        batch, mels, _rows = self.data.batch(list(key[2]))
        return key, batch, mels

    def __len__(self) -> int:  # never used for sampling: the key stream is infinite
        return len(self.data)


def _identity(item: Any) -> Any:
    return item


class _Keys:
    """The cursor walked forward from `start`, skipping `skip`, as batch keys (infinite)."""

    def __init__(self, start: Cursor, skip: frozenset[tuple[int, int]], rank: int, lengths: Lengths | None) -> None:
        self.start, self.skip, self.rank, self.lengths = start, skip, rank, lengths

    def __iter__(self) -> Iterator[Key]:
        cursor = self.start
        while True:
            while (cursor.epoch, cursor.position) in self.skip:
                cursor = advance(cursor)
            yield cursor.epoch, cursor.position, tuple(batch_indices(cursor, self.rank, self.lengths))
            cursor = advance(cursor)


class Prefetcher:
    """`get(cursor, indices)` returns that batch, from the workers when they have it ready."""

    def __init__(self, data: Rows, depth: int, workers: int, pin: bool, rank: int, lengths: Lengths | None) -> None:
        self.data, self.depth, self.workers, self.pin = data, depth, max(1, workers), pin
        self.rank, self.lengths = rank, lengths
        self._iter: Iterator[Prepared] | None = None
        self._peeked: Prepared | None = None
        self.rebuilds = 0

    def _start(self, cursor: Cursor, skip: set[tuple[int, int]]) -> Iterator[Prepared]:
        loader = DataLoader(
            _Batches(self.data), sampler=_Keys(cursor, frozenset(skip), self.rank, self.lengths),
            batch_size=None, collate_fn=_identity, num_workers=self.workers,
            prefetch_factor=max(1, -(-self.depth // self.workers)), pin_memory=self.pin,
        )
        self.rebuilds += 1
        return iter(loader)

    def prime(self, cursor: Cursor, skip: set[tuple[int, int]]) -> None:
        """Start the workers at `cursor` and wait for its batch, so the next step does not."""
        self.close()
        self._iter = self._start(cursor, skip)
        self._peeked = next(self._iter)

    def get(self, cursor: Cursor, indices: list[int],
            skip: set[tuple[int, int]]) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        want: Key = (cursor.epoch, cursor.position, tuple(indices))
        for _attempt in range(2):
            if self._iter is None:
                self._iter = self._start(cursor, skip)
            if self._peeked is not None:
                (key, batch, mels), self._peeked = self._peeked, None
            else:
                key, batch, mels = next(self._iter)
            if key == want:
                return batch, mels
            self.close()  # the stream went stale (rollback or a new skip): restart it here
        raise RuntimeError(f"prefetch produced {key[:2]} where the step wanted {want[:2]}")

    def close(self) -> None:
        self._iter = None  # the DataLoader iterator's workers shut down when it is collected
        self._peeked = None

