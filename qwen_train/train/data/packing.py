"""Where the "strata-v2" rule (budget.py) cuts the length-sorted rows into strata: a small exact optimisation.

Why an optimisation and not a tolerance: strata-v1 cut a stratum where the
next row was 5% shorter than its first, then filled its last batch with
whatever rows came next. On a large pool that costs little, but on a few
hundred Riksdag-shaped rows at a 32 GiB card's budget the sparse long tail made
every stratum a batch or two whose last one reached far down, and 10-20% of
the positions processed were padding. Cutting where rows thin out instead
leaves batches half empty. Which cut is right depends on the whole pool, so
this module chooses it exactly:

* Rows of one padded width are interchangeable for padding (collate pads a
  batch to its widest row's padded width), so the sorted rows form *bins* of
  equal width. A stratum starts in some bin, at its first row not already
  taken, and may take up to k - 1 rows of the bins below (k = budget // its
  width): more would be better spent starting the next stratum. Two strata
  starting in one bin are never better than one, so there is at most one a bin.
* A plan is charged its processed positions, bounded by each stratum's width
  times its rows (a batch's widest row is at most its stratum's first), plus
  `charge` positions per micro-batch. A dynamic programme over the bins, its
  state the rows the last stratum took from the next bin on, finds the
  cheapest plan exactly, in integers (the same plan on every machine), in time
  bins x k x k, whatever the number of rows.
* The charge is the budget itself (a micro-batch fewer is worth up to a full
  micro-batch of padding), lowered by bisection until the plan pads at most
  TARGET_PERCENT of what it processes. The bound is exact when each stratum is
  one batch and above the truth otherwise, so an epoch's padding is at most the
  target; a pool whose rows cannot be padded that little even one stratum a
  bin (rows whose own rounding to the pad multiple exceeds it) takes the plan
  with the least padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TARGET_PERCENT = 8  # of processed positions: 2 points under the 10% the budget is built to stay under, since
# part of an epoch (a bench's timed window, a rank's share) can pad more than the whole epoch does


@dataclass(frozen=True)
class Bin:
    """A run of sorted rows of one padded width."""

    start: int  # its first row's place in the sorted order
    count: int
    width: int
    per_batch: int  # budget // width


@dataclass(frozen=True)
class Cut:
    """One stratum: rows [start, end) of the sorted order, `per_batch` to a micro-batch."""

    start: int
    end: int
    per_batch: int
    width: int  # the padded width of its first row, and so an upper bound on every batch's width

    @property
    def batches(self) -> int:
        return -(-(self.end - self.start) // self.per_batch)


def bins_of(widths: list[int], budget: int) -> list[Bin]:
    """The sorted rows' padded widths (non-increasing, each at most the budget) as bins."""
    out: list[Bin] = []
    start = 0
    for i in range(1, len(widths) + 1):
        if i == len(widths) or widths[i] != widths[start]:
            out.append(Bin(start, i - start, widths[start], budget // widths[start]))
            start = i
    return out


def _step(cost: np.ndarray, b: Bin, charge: int) -> tuple[np.ndarray, np.ndarray]:
    """The cheapest cost through bin `b` for each s = 0 .. k-1 rows taken past it, and how (the t it came from).

    `cost[t]` is the cheapest plan of the rows above `b` whose strata also took t rows from b on. Either a
    stratum starts in b at its row t < count, taking the rest of b and s rows past it, or t covers all of b
    and s = t - count (< k: t < the k above, which is at most b's).
    """
    k = b.per_batch
    taken_in = np.arange(min(b.count, cost.size), dtype=np.int64)
    taken_out = np.arange(k, dtype=np.int64)
    rows = (b.count - taken_in)[:, None] + taken_out[None, :]
    start = cost[taken_in][:, None] + b.width * rows + charge * (-(-rows // k))
    choice = np.argmin(start, axis=0)
    best = start[choice, taken_out]
    for t in range(b.count, cost.size):  # the stratum above passes over all of b
        if cost[t] < best[t - b.count]:
            best[t - b.count], choice[t - b.count] = cost[t], t
    return best, choice


def cheapest(bins: list[Bin], charge: int) -> list[Cut]:
    """The plan of least processed positions + `charge` per micro-batch (module docstring)."""
    cost = np.zeros(1, dtype=np.int64)
    choices = []
    for b in bins:
        cost, choice = _step(cost, b, charge)
        choices.append(choice)
    cuts: list[Cut] = []
    taken_out = 0  # nothing is left to take past the last bin
    for b, choice in zip(reversed(bins), reversed(choices), strict=True):
        taken_in = int(choice[taken_out])
        if taken_in < b.count:
            cuts.append(Cut(b.start + taken_in, b.start + b.count + taken_out, b.per_batch, b.width))
        taken_out = taken_in  # what the bins above took past them: into b, or over all of b and on
    return cuts[::-1]


def padding_within_target(cuts: list[Cut], total: int) -> bool:
    """Whether the plan's bound on padding is at most TARGET_PERCENT of its processed positions (`total`: the
    rows' own positions); in integers, so the answer is the same on every machine."""
    processed = sum(c.width * (c.end - c.start) for c in cuts)
    return 100 * (processed - total) <= TARGET_PERCENT * processed


def plan_cuts(widths: list[int], total: int, budget: int) -> list[Cut]:
    """The strata of rows whose sorted padded widths are `widths` and own positions sum to `total`.

    The largest charge (at most the budget) whose plan keeps within the target, by bisection over integers (a
    larger charge never buys less padding); the first try, at the budget, is the answer for most pools of a
    thousand rows or more.
    """
    bins = bins_of(widths, budget)
    best = cheapest(bins, budget)
    if padding_within_target(best, total):
        return best
    low, high = 1, budget  # `high` over the target; `low` within it once checked
    best = cheapest(bins, low)
    if not padding_within_target(best, total):
        return best  # no plan pads that little: the least-padded one
    while high - low > 1:
        middle = (low + high) // 2
        cuts = cheapest(bins, middle)
        if padding_within_target(cuts, total):
            low, best = middle, cuts
        else:
            high = middle
    return best
