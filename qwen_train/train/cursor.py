"""The data cursor: where a run is in its data, and whether a saved one still fits.

The order of an epoch is a pure function of (sampler seed, epoch, row count):
a seeded permutation of the train rows, cut into global batches, each rank
taking its own slice. The cursor (epoch, position) therefore locates any batch
in O(1): resume computes that epoch's permutation and slices; no batch before
it is replayed. A saved cursor is only meaningful for the same bundle content,
row count, batch size, world size and seed; anything else is refused
(fail-closed) unless the operator explicitly resets the epoch.

With `bucket` > 0 (length bucketing, the GPU default) the epoch is still a
pure function of those plus the rows' lengths (which the bundle fingerprint
pins): the permutation is cut into windows of `bucket` global batches, each
window is sorted by length and cut into batches, and the batches are shuffled.
Rows of similar length then share a batch, so little of a batch is padding.
"""

from __future__ import annotations

import functools

import msgspec
import torch

from qwen_train.checkpoint_files import Cursor, batches_per_epoch  # the saved form; re-exported


class CursorRejected(RuntimeError):
    """A saved cursor that cannot be right; the message names the mismatch."""


@functools.lru_cache(maxsize=2)
def epoch_order(seed: int, epoch: int, rows: int) -> torch.Tensor:
    """The epoch's permutation: computed once per epoch, the same at any cursor position."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(rows, generator=gen)


class Lengths:
    """Row lengths (for bucketing), hashed once so the epoch cache can key on them cheaply."""

    def __init__(self, values: list[int]) -> None:
        self.values = torch.tensor(values, dtype=torch.long)
        self._hash = hash(tuple(values))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Lengths) and self._hash == other._hash and torch.equal(self.values, other.values)


@functools.lru_cache(maxsize=2)
def bucketed_batches(seed: int, epoch: int, rows: int, global_batch: int, bucket: int,
                     lengths: Lengths) -> torch.Tensor:
    """(batches, global_batch) row indices: length-sorted windows of the epoch's permutation, shuffled."""
    order = epoch_order(seed, epoch, rows)
    n = batches_per_epoch(rows, global_batch)
    used = order[: n * global_batch]
    window = bucket * global_batch
    parts = []
    for start in range(0, used.numel(), window):
        chunk = used[start : start + window]
        ranked = torch.sort(lengths.values[chunk], stable=True, descending=True).indices
        parts.append(chunk[ranked])
    batches = torch.cat(parts).reshape(n, global_batch)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 500_000)
    return batches[torch.randperm(n, generator=gen)]


def batch_indices(cursor: Cursor, rank: int = 0, lengths: Lengths | None = None) -> list[int]:
    """Row indices of this rank's share of the global batch at `cursor`."""
    if cursor.bucket > 0:
        if lengths is None:
            raise ValueError("a bucketed cursor needs the rows' lengths")
        batches = bucketed_batches(cursor.seed, cursor.epoch, cursor.rows, cursor.batch_size * cursor.world_size,
                                   cursor.bucket, lengths)
        row = batches[cursor.position]
        return row[rank * cursor.batch_size : (rank + 1) * cursor.batch_size].tolist()
    order = epoch_order(cursor.seed, cursor.epoch, cursor.rows)
    start = (cursor.position * cursor.world_size + rank) * cursor.batch_size
    return order[start : start + cursor.batch_size].tolist()


def advance(cursor: Cursor) -> Cursor:
    nxt = cursor.position + 1
    if nxt >= cursor.batches_per_epoch:
        return msgspec.structs.replace(cursor, epoch=cursor.epoch + 1, position=0)
    return msgspec.structs.replace(cursor, position=nxt)



def validate_cursor(saved: Cursor, current: Cursor, saved_fingerprint: str, fingerprint: str, bundle: str) -> None:
    """Raise CursorRejected naming every reason the saved position is meaningless now."""
    problems: list[str] = []
    if saved_fingerprint != fingerprint:
        problems.append(
            f"bundle fingerprint differs: the checkpoint was trained on {saved_fingerprint[:16]}..., "
            f"the bundle at {bundle} is {fingerprint[:16]}..."
        )
    for field in ("rows", "batch_size", "world_size", "seed", "bucket"):
        was, now = getattr(saved, field), getattr(current, field)
        if was != now:
            problems.append(f"{field} changed from {was} to {now}")
    if not 0 <= saved.position < max(saved.batches_per_epoch, 1) or saved.epoch < 0:
        problems.append(
            f"position {saved.position} of epoch {saved.epoch} is past the end of its epoch "
            f"({saved.batches_per_epoch} batches)"
        )
    if problems:
        raise CursorRejected(
            "cursor rejected: " + "; ".join(problems)
            + ". Use the original bundle and settings, or pass --reset-cursor to restart the epoch from the "
            "checkpoint's weights."
        )


def reset_epoch(saved: Cursor, current: Cursor) -> Cursor:
    """--reset-cursor: the checkpoint's epoch, from its first batch, with today's settings."""
    return msgspec.structs.replace(current, epoch=max(saved.epoch, 0), position=0)
