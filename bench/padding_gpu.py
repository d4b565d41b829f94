"""The packing rule before (strata-v1) and after (today's) on the GPU: Riksdag-length rows, full size, 32 GiB cap.

    PYTHONPATH=/tmp/site python3 -m bench.padding_gpu --budgets 3000,3944 --out $OUT

bench/padding.py computes the padding of either rule exactly on the CPU; what
only the GPU says is what the change costs or saves in time: strata-v2 pads less
but on a small pool runs more, emptier micro-batches. Each rule trains the
bench's Riksdag-shaped pool (train_throughput's at batch 8: 128 rows, lengths
2-30 s) with the lean recipe under the cap, `--warmup` steps then `--steps`
timed steps of 4 micro-batches (lean_profile.variant), the old rule swapped in
for the "before" run the way a run would deal it (budget.deal).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from bench.lean_profile import ACCUM, variant
from bench.padding import strata_v1
from bench.plan_check import cap
from bench.train_synth import make_rows, model_config
from qwen_train.train.data import budget

BENCH_SEED = 1234 + 8  # train_throughput's pool at batch 8


def with_rule(old: bool) -> None:
    """Make the trainer deal strata-v1's strata (old) or today's; the plan caches are emptied either way."""
    budget.strata = strata_v1 if old else RULE_NOW  # type: ignore[assignment]
    budget.epoch_batches.cache_clear()


RULE_NOW = budget.strata


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budgets", default="3000,3944")
    parser.add_argument("--cap-gib", type=float, default=32.0)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rules", default="old,new", help="which rules, in order (each alone: a fresh process each)")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    device = torch.device("cuda")
    cfg = model_config("full")
    rows = make_rows(4 * ACCUM * 8, cfg, BENCH_SEED, 64, "riksdag")
    cap(device, args.cap_gib)
    results: list[dict[str, Any]] = []
    for frame_budget in [int(b) for b in args.budgets.split(",")]:
        for old in [rule == "old" for rule in args.rules.split(",")]:
            with_rule(old)
            out = variant(cfg, rows, frame_budget, "lean", device, args.warmup, args.steps, None)
            out["rule"] = "strata-v1" if old else budget.RULE
            print(json.dumps({k: v for k, v in out.items() if k != "step_s"}), flush=True)
            results.append(out)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "padding-gpu.json").write_text(json.dumps({"device": torch.cuda.get_device_name(0),
                                                           "cap_gib": args.cap_gib, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
