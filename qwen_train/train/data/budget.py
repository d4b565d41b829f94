"""Micro-batches by a budget of padded talker positions instead of a fixed row count (`train.frame_budget`).

A row count sized for short clips runs a card out of memory on a batch of long
ones, and one sized for long clips leaves it idle on short ones. With a budget
B, a micro-batch holds as many rows as fit `rows x width <= B`, where the width
is what collate pads the batch to: its longest row's `layout.build_row` length
(role, codec prefix, text, control and frame positions: every position the
talker runs), rounded up to the pad multiple. The code predictor's work is per
frame, which the budget bounds too (a row has fewer frames than positions).

The packing rule, RULE (named in the cursor's plan digest, so changing it
makes old cursors fail closed):

1. Strata, once per run. Rows sorted longest first (ties by index) are cut into
   runs of consecutive rows. A stratum's first row sets its width W (padded)
   and its rows per batch k = B // W; its last batch may hold fewer than k.
   Where to cut is chosen by packing.py: as few micro-batches as it can take
   while its padding stays within packing.TARGET_PERCENT (8%) of the positions processed,
   counting every row of a stratum at its width W (an upper bound: a batch is
   as wide as its widest row). strata-v1 cut at a 5% length tolerance and
   filled each stratum's last batch with the rows that came next, which on a
   few hundred Riksdag-length rows padded 10-16% of every position at a 32 GiB
   card's budgets: in the sparse long tail those rows were much shorter.
2. Each epoch: every stratum's rows in a seeded order, cut into batches of k,
   then all batches in a seeded order. A stratum of many batches (where rows
   are dense) deals its rows into other batches each epoch; one of a single
   batch (the sparse tail) keeps them together, only its place moving. A
   stratum's batch count is
   ceil(rows / k) whatever the order, so the epoch's count is fixed by the
   lengths, the budget and the pad multiple: the cursor records it, and any
   position is found in O(1).
3. Processes: global position p is batches p*N .. p*N + N - 1 of the epoch's
   order (N processes), rank r taking the r-th; the last (count mod N) are
   left out that epoch, so every rank takes the same number of batches.

A row that alone is wider than the budget is refused at start, naming the row
and the budget (BudgetError). It cannot be trained within the memory the
budget stands for: a batch of its own would run out of memory exactly where
the budget promised it would not, hours into a run instead of at its start.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from qwen_train.train.data import packing
from qwen_train.train.data.lengths import Lengths

RULE = "strata-v2"
_SEED_OFFSET = 250_000  # this plan's generator stream, apart from the permutation and bucket streams


class BudgetError(ValueError):
    """The budget cannot plan these rows; the message names the rows and the budget."""


def padded(length: int, multiple: int) -> int:
    """The width collate pads a batch whose longest row is `length` to."""
    return -(-length // multiple) * multiple if multiple > 0 else length


@dataclass(frozen=True)
class Stratum:
    rows: tuple[int, ...]  # row indices, longest first
    per_batch: int  # rows per micro-batch: budget // the padded length of the first (longest) row


def check_fits(lengths: Lengths, budget: int, pad_multiple: int, name: Callable[[int], str]) -> None:
    """BudgetError naming the rows wider than the budget on their own (the longest first)."""
    values = lengths.values.tolist()
    wide = sorted((i for i, n in enumerate(values) if padded(n, pad_multiple) > budget), key=lambda i: -values[i])
    if not wide:
        return
    shown = "; ".join(f"{name(i)}: {values[i]} positions, {padded(values[i], pad_multiple)} padded"
                      for i in wide[:3])
    more = f" (and {len(wide) - 3} more)" if len(wide) > 3 else ""
    raise BudgetError(f"train.frame_budget {budget} is smaller than {len(wide)} train row(s) on their own: {shown}"
                      f"{more}. Raise the budget to at least {padded(values[wide[0]], pad_multiple)} or leave "
                      "those rows out of the bundle")


@functools.lru_cache(maxsize=2)
def strata(lengths: Lengths, budget: int, pad_multiple: int) -> tuple[Stratum, ...]:
    """The run's strata (rule step 1): fixed by the lengths, the budget and the pad multiple."""
    values = lengths.values.tolist()
    order = torch.sort(lengths.values, descending=True, stable=True).indices.tolist()
    widths = [padded(values[i], pad_multiple) for i in order]
    if widths and widths[0] > budget:
        raise BudgetError(f"row {order[0]} ({values[order[0]]} positions) is wider than train.frame_budget {budget}")
    cuts = packing.plan_cuts(widths, sum(values), budget)
    return tuple(Stratum(tuple(order[c.start : c.end]), c.per_batch) for c in cuts)


def micro_batches(lengths: Lengths, budget: int, pad_multiple: int) -> int:
    """Micro-batches per epoch, over all ranks: the same in every epoch."""
    return sum(-(-len(s.rows) // s.per_batch) for s in strata(lengths, budget, pad_multiple))


@functools.lru_cache(maxsize=2)
def epoch_batches(seed: int, epoch: int, budget: int, pad_multiple: int,
                  lengths: Lengths) -> tuple[tuple[int, ...], ...]:
    """The epoch's micro-batches in training order (rule step 2); computed once per epoch, at any position."""
    return deal(strata(lengths, budget, pad_multiple), seed, epoch)


def deal(layers: tuple[Stratum, ...], seed: int, epoch: int) -> tuple[tuple[int, ...], ...]:
    """Rule step 2 over given strata: apart from epoch_batches so bench/padding.py deals older rules' strata
    exactly as a run would."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch + _SEED_OFFSET)
    batches: list[tuple[int, ...]] = []
    for stratum in layers:
        rows = [stratum.rows[i] for i in torch.randperm(len(stratum.rows), generator=gen).tolist()]
        k = stratum.per_batch
        batches += [tuple(rows[i : i + k]) for i in range(0, len(rows), k)]
    return tuple(batches[i] for i in torch.randperm(len(batches), generator=gen).tolist())


def global_batches(lengths: Lengths, budget: int, pad_multiple: int, world_size: int) -> int:
    """Global batches (one micro-batch per rank) per epoch (rule step 3); BudgetError if not even one."""
    count = micro_batches(lengths, budget, pad_multiple)
    if count < world_size:
        raise BudgetError(f"the {len(lengths)} train rows make {count} micro-batch(es) of train.frame_budget "
                          f"{budget}, fewer than one per process ({world_size}): lower the budget or add rows")
    return count // world_size


def rank_batch(seed: int, epoch: int, position: int, budget: int, pad_multiple: int, world_size: int, rank: int,
               lengths: Lengths) -> list[int]:
    """Row indices of `rank`'s micro-batch at global `position` of `epoch`."""
    return list(epoch_batches(seed, epoch, budget, pad_multiple, lengths)[position * world_size + rank])
