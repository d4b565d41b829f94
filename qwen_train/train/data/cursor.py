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

With a frame budget (`train.frame_budget`) the rows per batch vary: budget.py
plans the epoch from (seed, epoch, the rows' lengths, budget, pad multiple),
with a batch count per epoch that is the same in every epoch, recorded in the
cursor; world size only says how the epoch's batches are dealt to the ranks.

Any plan that reads lengths records their digest (`plan`), so a changed rule
or rows that measure differently are refused like a changed batch size.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import msgspec
import torch

from qwen_train.checkpoint_files import Cursor, batches_per_epoch  # the saved form; re-exported
from qwen_train.train.data import budget
from qwen_train.train.data.lengths import Lengths  # re-exported: the plans' input

BUCKET_RULE = "bucket-v1"  # bucketed_batches below, as the cursor's plan digest names it


class CursorRejected(RuntimeError):
    """A saved cursor that cannot be right; the message names the mismatch."""


@functools.lru_cache(maxsize=2)
def epoch_order(seed: int, epoch: int, rows: int) -> torch.Tensor:
    """The epoch's permutation: computed once per epoch, the same at any cursor position."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(rows, generator=gen)


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
    if cursor.frame_budget > 0:
        if lengths is None:
            raise ValueError("a frame-budget cursor needs the rows' lengths")
        return budget.rank_batch(cursor.seed, cursor.epoch, cursor.position, cursor.frame_budget,
                                 cursor.pad_multiple, cursor.world_size, rank, lengths)
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


def start_cursor(seed: int, batch_size: int, frame_budget: int | None, world_size: int, lengths: Lengths,
                 bucket: int, pad_multiple: int, name: Callable[[int], str]) -> Cursor:
    """Step 0's cursor: the first batch of epoch 0 of the plan these settings give.

    With a frame budget, the plan is checked here, before anything trains: budget.BudgetError names any row
    wider than the budget and says so if the rows make fewer micro-batches than processes. The bucket setting
    does not apply then (the budget plan sorts by length itself), so the cursor records 0 for it.
    """
    if frame_budget:
        budget.check_fits(lengths, frame_budget, pad_multiple, name)
        count = budget.global_batches(lengths, frame_budget, pad_multiple, world_size)
        return Cursor(epoch=0, position=0, seed=seed, batch_size=0, world_size=world_size, rows=len(lengths),
                      frame_budget=frame_budget, pad_multiple=pad_multiple, global_batches=count,
                      plan=lengths.digest(budget.RULE))
    return Cursor(epoch=0, position=0, seed=seed, batch_size=batch_size, world_size=world_size, rows=len(lengths),
                  bucket=bucket, plan=lengths.digest(BUCKET_RULE) if bucket > 0 else "")


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
    for field in ("rows", "batch_size", "frame_budget", "pad_multiple", "world_size", "seed", "bucket"):
        was, now = getattr(saved, field), getattr(current, field)
        if was != now:
            problems.append(f"{field} changed from {was} to {now}")
    if saved.plan != current.plan:
        problems.append(f"the batch plan (rule and row lengths) changed from {saved.plan or 'none recorded'} to "
                        f"{current.plan or 'none'}")
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
