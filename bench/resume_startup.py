"""Resume start-up at an early vs a late cursor position on a large synthetic manifest.

The cursor locates a batch in O(1): resuming near the end of a huge epoch
must cost about what resuming at its start costs (ratio ~1). This times the
part of start-up that depends on the position: validating the saved cursor
and drawing the first batch's row indices, for a manifest of N rows.

    .venv/bin/python bench/resume_startup.py [--rows 5000000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

from qwen_train.train.cursor import Cursor, batch_indices, epoch_order, validate_cursor


def first_batch_after_resume(saved: Cursor) -> float:
    epoch_order.cache_clear()  # a new process starts with no cached permutation
    start = time.perf_counter()
    validate_cursor(saved, saved, "f" * 64, "f" * 64, "bench")
    batch_indices(saved, rank=0)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    base = Cursor(epoch=3, position=0, seed=1234, batch_size=args.batch, world_size=1, rows=args.rows)
    late = Cursor(epoch=3, position=base.batches_per_epoch - 1, seed=1234, batch_size=args.batch, world_size=1,
                  rows=args.rows)
    early_t = statistics.median(first_batch_after_resume(base) for _ in range(args.repeat))
    late_t = statistics.median(first_batch_after_resume(late) for _ in range(args.repeat))
    print(f"rows={args.rows:,} batches/epoch={base.batches_per_epoch:,}")
    print(f"resume at batch 0: {early_t * 1e3:.1f} ms   at batch {late.position:,}: {late_t * 1e3:.1f} ms   "
          f"ratio late/early {late_t / early_t:.2f}")


if __name__ == "__main__":
    main()
