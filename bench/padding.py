"""Padding and budget use of the frame-budget packing rule, before (strata-v1) and after (today's RULE), on the CPU.

    .venv/bin/python -m bench.padding

Issue 31 measured 11.8% padding on Riksdag-length rows on an H100
(`bench.train_throughput --rows riksdag --frame-budget 3000`). Padding is a
pure function of the rows' lengths, the budget, the pad multiple and the seed,
so it is computed here exactly, with no model and no GPU: the batches are the
ones a run draws (budget.deal), each padded as collate pads it (its widest
row's length rounded up to the pad multiple). Two tables:

1. Whole epochs of Riksdag-shaped pools (bench.train_synth.riksdag_sizes,
   lengths as SynthRow.length lays them out) for a grid of pool sizes and
   budgets, including the largest budgets `qwen-train plan` gives a 32 GiB card
   for the 1.7B model (full fine-tune and a rank-16 LoRA, lean recipe).
2. The bench's own pools (make_rows, as train_throughput draws them for
   `--rows riksdag --steps S` at batch b) over what the bench times: a whole
   number of optimizer steps from an epoch's start, the largest over epochs 1-4.

Padding share: padded positions / positions processed. Budget use: positions
processed / (micro-batches x budget). Fewer rows a micro-batch means more
micro-batches for the same rows, each with its fixed cost.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import torch

from bench.train_synth import make_rows, model_config, riksdag_sizes
from qwen_train.train.data import budget
from qwen_train.train.data.lengths import Lengths

PAD = 8  # the GPU default pad multiple (Perf.pad_multiple)
SEED = 7  # the sampler seed the epochs are dealt with
ACCUM = 4  # bench.train_throughput's micro-batches an optimizer step
BENCH_SEED = 1234  # bench.train_throughput's SEED: its pool at batch b is drawn with SEED + b
# `qwen-train plan --gpu-memory 32GiB` on the 1.7B config, lean recipe, rounded down to the pad multiple:
# 2,923 codec frames (full fine-tune) and 4,110 (rank-16 LoRA), as frames_budget converts frames to positions
CARD_32GIB = {"full": 3944, "LoRA": 5544}


@dataclass(frozen=True)
class Shape:
    padding: float  # padded positions / processed positions
    use: float  # processed positions / (micro-batches x budget)
    rows: float  # rows per micro-batch
    batches: int  # micro-batches in the whole epoch


def strata_v1(lengths: Lengths, frame_budget: int, pad: int) -> tuple[budget.Stratum, ...]:
    """The rule before issue 31, kept here to measure against: cut where the next row is 5% shorter than a
    stratum's first, once its row count is a multiple of k; its last batch filled with the rows after."""
    values = lengths.values.tolist()
    order = torch.sort(lengths.values, descending=True, stable=True).indices.tolist()
    out: list[budget.Stratum] = []
    current: list[int] = []
    top = per = 0
    for index in order:
        if current and len(current) % per == 0 and values[index] < 0.95 * top:
            out.append(budget.Stratum(tuple(current), per))
            current = []
        if not current:
            top, per = values[index], frame_budget // budget.padded(values[index], pad)
        current.append(index)
    return (*out, budget.Stratum(tuple(current), per)) if current else tuple(out)


def shape(values: list[int], batches: tuple[tuple[int, ...], ...], frame_budget: int, epoch: int) -> Shape:
    """The figures of `batches`, drawn from an epoch of `epoch` micro-batches."""
    processed = sum(budget.padded(max(values[i] for i in b), PAD) * len(b) for b in batches)
    real = sum(values[i] for b in batches for i in b)
    return Shape(1 - real / processed, processed / (len(batches) * frame_budget),
                 sum(map(len, batches)) / len(batches), epoch)


def riksdag_lengths(count: int, seed: int = 0) -> list[int]:
    """Talker positions of `count` Riksdag-shaped rows: text tokens + codec frames + the layout's 10."""
    return [tokens + frames + 10 for tokens, frames in riksdag_sizes(count, np.random.default_rng(seed))]


def both(values: list[int], frame_budget: int, window: int | None, epochs: range) -> tuple[Shape, Shape]:
    """(before, after) over `epochs`: the worst padding of them, each over its first `window` batches
    rounded down to whole optimizer steps (None: the whole epoch)."""
    lengths = Lengths(values)
    out = []
    for layers in (strata_v1(lengths, frame_budget, PAD), budget.strata(lengths, frame_budget, PAD)):
        shapes = []
        for epoch in epochs:
            batches = budget.deal(layers, SEED, epoch)
            drawn = batches if window is None else batches[: len(batches) // window * window]
            shapes.append(shape(values, drawn, frame_budget, len(batches)))
        out.append(max(shapes, key=lambda s: s.padding))
    return out[0], out[1]


def row(label: str, before: Shape, after: Shape) -> str:
    return (f"| {label} | {before.padding:.1%} | {after.padding:.1%} | {before.use:.1%} | {after.use:.1%} | "
            f"{before.rows:.1f} | {after.rows:.1f} | {before.batches} | {after.batches} |")


HEADER = ("| {} | padding before | padding after | budget use before | budget use after | rows/micro-batch before "
          "| rows/micro-batch after | micro-batches an epoch before | after |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def grid(pools: list[int], budgets: list[int]) -> list[str]:
    lines = [HEADER.format("rows, budget")]
    for count in pools:
        values = riksdag_lengths(count)
        for frame_budget in budgets:
            lines.append(row(f"{count:,}, {frame_budget:,}", *both(values, frame_budget, None, range(1))))
    return lines


def bench_pools(budgets: list[int]) -> list[str]:
    cfg = model_config("tiny")  # only the code groups and codebook size matter to the lengths
    lines = [HEADER.format("bench pool, budget")]
    for steps, batch in [(4, 8), (5, 8), (4, 32), (5, 32)]:
        values = [r.length for r in make_rows(steps * ACCUM * batch, cfg, BENCH_SEED + batch, 64, "riksdag")]
        for frame_budget in budgets:
            label = f"--steps {steps}, batch {batch} ({len(values)} rows), {frame_budget:,}"
            lines.append(row(label, *both(values, frame_budget, ACCUM, range(1, 5))))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", default="256,512,1024,4000,20000")
    parser.add_argument("--budgets", default=f"2000,3000,{CARD_32GIB['full']},{CARD_32GIB['LoRA']},6000")
    args = parser.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    print(f"Pad multiple {PAD}; before: strata-v1; after: {budget.RULE}. Whole epoch 0, sampler seed {SEED}, "
          "one pool per size (riksdag_sizes, seed 0).\n")
    print("\n".join(grid([int(p) for p in args.pools.split(",")], budgets)))
    print(f"\nThe bench's pools, over whole optimizer steps ({ACCUM} micro-batches) from an epoch's start (what "
          "the bench times), the epoch of the largest padding of epochs 1-4.\n")
    print("\n".join(bench_pools([3000, CARD_32GIB["full"]])))


if __name__ == "__main__":
    main()
