"""Padding under 10% on Riksdag-length rows at a 32 GiB card's budgets, the budget still used (issue 31, point 3).

On a few hundred Riksdag-shaped rows (2-30 s, long-tailed) strata-v1 padded
10-16% of the positions processed at budgets of 4,000-6,000; the H100 bench
read 11.8%. These tests draw such pools as the bench does (seeded), plan them
with today's rule and check, exactly and on the CPU: every epoch pads at most
the rule's target, each batch keeps within the budget, the budget stays used,
and on pools of 512 rows or more no more micro-batches are taken than before.
The cut itself is checked against every possible cut of small pools.
"""

from __future__ import annotations

import itertools
import random

import pytest

from bench.padding import PAD, both, riksdag_lengths
from bench.train_synth import make_rows, model_config
from qwen_train.train.data import budget, packing
from qwen_train.train.data.lengths import Lengths

# 3,944 and 5,544: the largest budgets `qwen-train plan --gpu-memory 32GiB` gives the 1.7B model (lean recipe),
# full fine-tune and rank-16 LoRA, rounded down to the pad multiple
BUDGETS = [2000, 3000, 3944, 5544, 6000]


def least_use(rows: int, frame_budget: int) -> float:
    """The budget use each pool keeps at least. A few hundred rows have a long tail too sparse to fill a large
    budget's batches without padding: there the target is kept by taking emptier batches."""
    if rows >= 512:
        return 0.88
    return 0.85 if frame_budget <= 3000 else 0.6


@pytest.mark.parametrize("frame_budget", BUDGETS)
@pytest.mark.parametrize("rows", [256, 512, 2000, 20000])
def test_riksdag_rows_pad_under_the_target_and_use_the_budget(rows: int, frame_budget: int) -> None:
    values = riksdag_lengths(rows, seed=rows)
    lengths = Lengths(values)
    for epoch in range(2):
        batches = budget.epoch_batches(3, epoch, frame_budget, PAD, lengths)
        widths = [budget.padded(max(values[i] for i in b), PAD) for b in batches]
        assert all(w * len(b) <= frame_budget for w, b in zip(widths, batches, strict=True))
        assert sorted(i for b in batches for i in b) == list(range(rows))
        processed = sum(w * len(b) for w, b in zip(widths, batches, strict=True))
        assert 1 - sum(values) / processed <= packing.TARGET_PERCENT / 100 < 0.10
        assert processed / (len(batches) * frame_budget) >= least_use(rows, frame_budget)
    before, after = both(values, frame_budget, None, range(1))
    assert after.padding < before.padding
    if rows >= 512:  # less padding, and not by taking more micro-batches than strata-v1 did
        assert after.batches <= before.batches


@pytest.mark.parametrize("frame_budget", [2048, 16384])
def test_unpadded_rows_and_a_large_budget_keep_the_target(frame_budget: int) -> None:
    values = riksdag_lengths(3000, seed=5)
    batches = budget.epoch_batches(3, 0, frame_budget, 0, Lengths(values))
    processed = sum(max(values[i] for i in b) * len(b) for b in batches)
    assert 1 - sum(values) / processed <= packing.TARGET_PERCENT / 100
    assert all(max(values[i] for i in b) * len(b) <= frame_budget for b in batches)


@pytest.mark.parametrize(("steps", "batch"), [(4, 8), (5, 8)])
def test_the_issues_bench_run_pads_under_ten_percent_where_it_times(steps: int, batch: int) -> None:
    """`bench.train_throughput --rows riksdag --frame-budget 3000`: its pool, over the whole optimizer steps it
    times from an epoch's start (a part of the epoch may pad more than the whole), epochs 1-4."""
    values = [r.length for r in make_rows(steps * 4 * batch, model_config("tiny"), 1234 + batch, 64, "riksdag")]
    before, after = both(values, 3000, 4, range(1, 5))
    assert before.padding > 0.10 > after.padding  # what the H100 read (11.8%), and no longer


def best_by_enumeration(widths: list[int], frame_budget: int, charge: int) -> int:
    """The least cost over every cut of the sorted rows into runs (no assumption on where runs may end)."""
    best = None
    for marks in itertools.product([False, True], repeat=len(widths) - 1):
        starts = [0] + [i + 1 for i, m in enumerate(marks) if m]
        cost = 0
        for start, end in zip(starts, [*starts[1:], len(widths)], strict=True):
            k = frame_budget // widths[start]
            cost += widths[start] * (end - start) + charge * -(-(end - start) // k)
        best = cost if best is None else min(best, cost)
    assert best is not None
    return best


def test_the_cut_is_the_cheapest_of_all_cuts() -> None:
    rng = random.Random(11)
    for _ in range(150):
        frame_budget = rng.choice([60, 100, 240])
        widths = sorted((rng.choice([8, 16, 24, 32, 40, 48, 56]) for _ in range(rng.randint(1, 11))), reverse=True)
        widths = [w for w in widths if w <= frame_budget] or [8]
        charge = rng.choice([1, 7, 30, frame_budget])
        cuts = packing.cheapest(packing.bins_of(widths, frame_budget), charge)
        assert [c.start for c in cuts][0] == 0 and cuts[-1].end == len(widths)
        assert all(a.end == b.start for a, b in itertools.pairwise(cuts))
        assert all(c.per_batch == frame_budget // widths[c.start] for c in cuts)
        cost = sum(c.width * (c.end - c.start) + charge * c.batches for c in cuts)
        assert cost == best_by_enumeration(widths, frame_budget, charge), (widths, frame_budget, charge)


def test_rows_that_cannot_pad_that_little_take_the_least_padded_plan() -> None:
    values = [9] * 40  # each pads to 16 at a multiple of 8: 44% padding whatever the cut
    layers = budget.strata(Lengths(values), 160, 8)
    assert [(len(s.rows), s.per_batch) for s in layers] == [(40, 10)]  # full batches, none left half empty
