"""Micro-batches by a frame budget: within the budget, little padding, a pure function of the cursor.

Measured on the demo bundle (through the real collate) and on a long-tailed
pool of Riksdag-like sizes (2-30 s at 12.5 frames/s, bench.train_synth): no
batch above its budget, padding under 10% of the positions processed, every
row once per epoch, the same batch count every epoch and for every rank, and
every setting the plan depends on recorded in the cursor and checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
import torch

from bench.train_synth import riksdag_sizes
from qwen_train.modeldir import load_base_model
from qwen_train.train.data import budget
from qwen_train.train.data.batches import BundleData
from qwen_train.train.data.cursor import (
    Cursor,
    CursorRejected,
    Lengths,
    advance,
    batch_indices,
    start_cursor,
    validate_cursor,
)
from qwen_train.train.data.layout import SpecialIds
from qwen_train.train.data.prefetch import Prefetcher
from qwen_train.train.language import ensure_language

SEED = 7


def riksdag_lengths(count: int, seed: int = 0) -> list[int]:
    """Talker lengths of Riksdag-shaped rows: text tokens + frames + the layout's 10 control positions."""
    return [tokens + frames + 10 for tokens, frames in riksdag_sizes(count, np.random.default_rng(seed))]


def plan(lengths: Lengths, frame_budget: int, pad: int = 0, world: int = 1) -> Cursor:
    return start_cursor(SEED, 0, frame_budget, world, lengths, 0, pad, lambda i: f"row {i}")


def epoch(cursor: Cursor, number: int, lengths: Lengths, rank: int = 0) -> list[list[int]]:
    """Every batch `rank` draws in epoch `number`, position by position."""
    at = msgspec.structs.replace(cursor, epoch=number, position=0)
    return [batch_indices(msgspec.structs.replace(at, position=p), rank, lengths)
            for p in range(cursor.batches_per_epoch)]


def padding_share(batches: list[list[int]], values: list[int], pad: int) -> float:
    processed = sum(budget.padded(max(values[i] for i in b), pad) * len(b) for b in batches)
    return 1 - sum(values[i] for b in batches for i in b) / processed


@pytest.fixture(scope="module")
def demo_train(demo_root: Path) -> BundleData:
    model, processor = load_base_model(str(demo_root / "model"), "swedish")
    language = ensure_language(model, "swedish")
    return BundleData(demo_root / "bundle", processor, SpecialIds.from_config(model.config), language, "train")


def test_lengths_are_the_lengths_collate_sees(demo_root: Path, demo_train: BundleData) -> None:
    assert demo_train.lengths() == [demo_train.example(i).layout.length for i in range(len(demo_train))]
    model, processor = load_base_model(str(demo_root / "model"), None)  # no language tag: one position fewer
    plain = BundleData(demo_root / "bundle", processor, SpecialIds.from_config(model.config), None, "train")
    assert plain.lengths() == [plain.example(i).layout.length for i in range(len(plain))]


@pytest.mark.parametrize("pad", [0, 8])
@pytest.mark.parametrize("frame_budget", [160, 300, 640])
def test_demo_bundle_batches_fit_the_budget_with_little_padding(demo_train: BundleData, frame_budget: int,
                                                                pad: int) -> None:
    demo_train.pad_multiple = pad
    values = demo_train.lengths()
    lengths = Lengths(values)
    cursor = plan(lengths, frame_budget, pad)
    batches = epoch(cursor, 0, lengths)
    processed = 0
    for indices in batches:
        batch, _mels, _rows = demo_train.batch(indices)
        rows, width = batch["attention_mask"].shape
        assert rows * width <= frame_budget, (indices, rows, width)
        processed += rows * width
    seen = [i for b in batches for i in b]
    assert len(seen) == len(set(seen)) == len(values)  # one process: no batch is left over
    assert 1 - sum(values) / processed == pytest.approx(padding_share(batches, values, pad))
    assert padding_share(batches, values, pad) < 0.10
    demo_train.pad_multiple = 0


@pytest.mark.parametrize("pad", [0, 8])
@pytest.mark.parametrize("frame_budget", [2048, 4096, 8192, 16384])
def test_long_tailed_rows_fit_the_budget_with_little_padding(frame_budget: int, pad: int) -> None:
    values = riksdag_lengths(20_000)
    lengths = Lengths(values)
    cursor = plan(lengths, frame_budget, pad)
    first = epoch(cursor, 0, lengths)
    for number, batches in enumerate([first, epoch(cursor, 1, lengths)]):
        assert len(batches) == cursor.batches_per_epoch
        assert all(budget.padded(max(values[i] for i in b), pad) * len(b) <= frame_budget for b in batches), number
        assert padding_share(batches, values, pad) < 0.10
        seen = [i for b in batches for i in b]
        assert len(seen) == len(set(seen)) == len(values)
    assert first != epoch(cursor, 1, lengths)  # each epoch its own membership and order
    full = sum(len(b) * budget.padded(max(values[i] for i in b), pad) for b in first) / (len(first) * frame_budget)
    assert full > 0.85  # the budget is used, not just respected: short rows fill a batch with more of them


def test_the_plan_is_a_pure_function_of_seed_lengths_budget_and_world() -> None:
    values = riksdag_lengths(3000, seed=1)
    cursor = plan(Lengths(values), 4096, 8)
    again = plan(Lengths(list(values)), 4096, 8)  # another object of the same lengths
    assert again == cursor and cursor.plan.startswith(f"{budget.RULE}:")
    walked, at = [], cursor
    for _ in range(cursor.batches_per_epoch + 3):  # across the epoch boundary, as the step moves
        walked.append(batch_indices(at, 0, Lengths(values)))
        at = advance(at)
    assert at.epoch == 1 and at.position == 3
    jumped = [batch_indices(msgspec.structs.replace(cursor, epoch=e, position=p), 0, Lengths(values))
              for e, p in [*((0, p) for p in range(cursor.batches_per_epoch)), (1, 0), (1, 1), (1, 2)]]
    assert walked == jumped  # resume lands on any position directly, with no batch before it replayed
    other_seed = start_cursor(SEED + 1, 0, 4096, 1, Lengths(values), 0, 8, str)
    assert batch_indices(other_seed, 0, Lengths(values)) != walked[0]


@pytest.mark.parametrize("world", [2, 3])
def test_every_rank_takes_the_same_number_of_batches_and_its_own_rows(world: int) -> None:
    values = riksdag_lengths(5000, seed=2)
    lengths = Lengths(values)
    single = plan(lengths, 4096, 8)
    cursor = plan(lengths, 4096, 8, world)
    assert cursor.batches_per_epoch == single.batches_per_epoch // world
    shares = [epoch(cursor, 0, lengths, rank) for rank in range(world)]
    assert all(len(share) == cursor.batches_per_epoch for share in shares)
    order = budget.epoch_batches(SEED, 0, 4096, 8, lengths)
    for position in range(cursor.batches_per_epoch):  # position p is the p-th run of `world` batches
        assert [shares[r][position] for r in range(world)] == [list(b) for b in
                                                               order[position * world : (position + 1) * world]]
    seen = [i for share in shares for b in share for i in b]
    assert len(seen) == len(set(seen))  # no row on two ranks, nor twice on one


def test_a_row_wider_than_the_budget_is_named_at_start() -> None:
    values = [120, 90, 700, 95, 650]
    with pytest.raises(budget.BudgetError) as caught:
        start_cursor(SEED, 0, 600, 1, Lengths(values), 0, 8, lambda i: f"row clip-{i}")
    message = str(caught.value)
    assert "train.frame_budget 600" in message and "2 train row(s)" in message
    assert message.index("row clip-2: 700 positions, 704 padded") < message.index("row clip-4: 650 positions")
    assert "at least 704" in message


def test_rows_too_few_for_one_batch_per_process_are_refused() -> None:
    with pytest.raises(budget.BudgetError, match="make 1 micro-batch.*fewer than one per process \\(2\\)"):
        start_cursor(SEED, 0, 10_000, 2, Lengths([100, 100, 90]), 0, 0, str)


def test_a_changed_budget_pad_multiple_or_lengths_is_refused() -> None:
    values = riksdag_lengths(2000, seed=3)
    saved = msgspec.structs.replace(plan(Lengths(values), 4096, 8), position=3)
    cases: list[tuple[Cursor, str]] = [
        (plan(Lengths(values), 2048, 8), "frame_budget changed from 4096 to 2048"),
        (plan(Lengths(values), 4096, 0), "pad_multiple changed from 8 to 0"),
        (plan(Lengths([*values[:-1], values[-1] + 1]), 4096, 8), "the batch plan (rule and row lengths) changed"),
        (start_cursor(SEED, 2, None, 1, Lengths(values), 0, 8, str), "frame_budget changed from 4096 to 0"),
    ]
    for current, expected in cases:
        with pytest.raises(CursorRejected, match=expected.replace("(", "\\(").replace(")", "\\)")):
            validate_cursor(saved, current, "f", "f", "b")
    validate_cursor(saved, plan(Lengths(values), 4096, 8), "f", "f", "b")  # the same settings: accepted


def test_fixed_row_cursors_are_unchanged_and_old_ones_decode() -> None:
    fixed = start_cursor(SEED, 2, None, 1, Lengths([50] * 9), 0, 8, str)
    assert (fixed.plan, fixed.frame_budget, fixed.pad_multiple, fixed.batches_per_epoch) == ("", 0, 0, 4)
    old = msgspec.json.decode(b'{"epoch":0,"position":1,"seed":7,"batch_size":2,"world_size":1,"rows":9}',
                              type=Cursor)
    validate_cursor(old, msgspec.structs.replace(fixed, seed=7), "f", "f", "b")  # a CPU run from before resumes
    bucketed = start_cursor(SEED, 2, None, 1, Lengths(list(range(40, 49))), 3, 8, str)
    assert bucketed.plan.startswith("bucket-v1:")
    with pytest.raises(CursorRejected, match="changed from none recorded to bucket-v1"):
        # a bucketed cursor from before lengths were recorded: its plan read other (estimated) lengths
        validate_cursor(msgspec.structs.replace(old, seed=SEED, bucket=3), bucketed, "f", "f", "b")


class Indexed:
    """Rows whose batch is just its indices, for checking which batches the prefetcher hands out."""

    def __len__(self) -> int:
        return 400

    def batch(self, indices: list[int]) -> tuple[dict[str, torch.Tensor], list[torch.Tensor], list[Any]]:
        return {"ids": torch.tensor(indices)}, [], []


def test_prefetched_budget_batches_are_the_drawn_ones_across_an_epoch() -> None:
    lengths = Lengths(riksdag_lengths(400, seed=4))
    cursor = plan(lengths, 2048, 8)
    fetch = Prefetcher(Indexed(), depth=4, workers=1, pin=False, rank=0, lengths=lengths)
    for _ in range(cursor.batches_per_epoch + 5):
        indices = batch_indices(cursor, 0, lengths)
        batch, _mels = fetch.get(cursor, indices, set())
        assert batch["ids"].tolist() == indices
        cursor = advance(cursor)
    fetch.close()
    assert fetch.rebuilds == 1 and cursor.epoch == 1
