"""Where the lean recipe's step time goes, full size on one GPU, against the upstream recipe in the same run.

    PYTHONPATH=/tmp/site python3 -m bench.lean_profile --budget 1800 --cap-gib 24 --steps 10

Each variant trains `--steps` optimizer steps (4 micro-batches each) on the
bench's synthetic rows after `--warmup` steps; each step is timed to its end
on the device, and the optimizer's step (the stochastically rounded AdamW) is
timed on its own by wrapping it, so forward+backward is the rest. Dynamo's
graph count before and after the timed window shows any recompile inside it.
One lean step is also profiled (top kernels by device time). The upstream
recipe (bf16 weights, torch AdamW, batch `--baseline-batch` under
`--baseline-cap-gib`) runs first as the ratio's baseline.

Writes OUT/lean-profile.json. A CPU dry run: `--scale tiny --budget 300 --steps 2 --cap-gib 0`.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.plan_check import SEED, cap, session
from bench.train_synth import make_rows, model_config
from bench.train_throughput import compiled_graphs, peak_gib, run_baseline, shape_of, sync
from qwen_train.train.device.perf import PERF_ENV
from qwen_train.train.step import train_step

ACCUM = 4


class Timed:
    """Wraps a callable and sums the device time of its calls."""

    def __init__(self, inner: Any, device: torch.device) -> None:
        self.inner, self.device, self.seconds, self.calls = inner, device, 0.0, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        sync(self.device)
        start = time.perf_counter()
        out = self.inner(*args, **kwargs)
        sync(self.device)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def top_kernels(s: Any, device: torch.device, rows: int = 25) -> str:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        train_step(s)
        sync(device)
    key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    return str(prof.key_averages().table(sort_by=key, row_limit=rows))


VARIANTS = {  # name: (recipe, QWEN_TRAIN_PERF overrides, fused lean optimizer)
    "lean": ("lean", {}, True),
    "lean-unfused": ("lean", {}, False),
    "lean-cudnn": ("lean", {"cudnn_attention": True}, True),
    "lean-eager": ("lean", {"compile_layers": False}, True),
    "fp32-master": ("fp32-master", {}, True),
}


def variant(cfg: dict[str, Any], rows: list[Any], budget: int, name: str, device: torch.device, warmup: int,
            steps: int, profile_to: Path | None) -> dict[str, Any]:
    recipe, perf, fused = VARIANTS[name]
    os.environ[PERF_ENV] = json.dumps(perf)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            s = session(cfg, rows, budget, recipe, device, Path(tmp), accum=ACCUM)
            if hasattr(s.optimizer, "fused") and recipe == "lean":
                s.optimizer.fused = fused
            for _ in range(warmup):
                train_step(s)
            timer = Timed(s.optimizer.step, device)
            s.optimizer.step = timer  # type: ignore[method-assign]
            sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            graphs, drawn, times = compiled_graphs(), [], []
            for _ in range(steps):
                start = time.perf_counter()
                train_step(s)
                sync(device)
                times.append(time.perf_counter() - start)
                drawn += s.progress.drawn
            new_graphs = compiled_graphs() - graphs
            kernels = top_kernels(s, device) if profile_to is not None else ""
        except torch.OutOfMemoryError as exc:
            return {"recipe": recipe, "budget": budget, "oom": str(exc).splitlines()[0]}
        if profile_to is not None:
            profile_to.write_text(kernels)
        elapsed = sum(times)
        frames = sum(rows[i].frames for b in drawn for i in b)
        steady = sorted(times)[len(times) // 2]
        out = {"recipe": recipe, "budget": budget, "steps": steps, "seconds": elapsed, "step_s": times,
               "median_step_s": steady, "frames_per_s_at_median_step": frames / len(times) / steady,
               "optimizer_s": timer.seconds, "optimizer_share": timer.seconds / elapsed,
               "frames_per_s": frames / elapsed, "graphs_compiled_in_window": new_graphs,
               "perf": {"compile_layers": s.perf.compile_layers, "pad_multiple": s.perf.pad_multiple}}
        out |= shape_of(rows, drawn, s.perf.pad_multiple) | peak_gib(device)
        del s
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["full", "tiny"], default="full")
    parser.add_argument("--budget", type=int, default=1800)
    parser.add_argument("--cap-gib", type=float, default=24.0)
    parser.add_argument("--baseline-batch", type=int, default=8)
    parser.add_argument("--baseline-cap-gib", type=float, default=32.0)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--variants", default="lean,lean-unfused,lean-cudnn,lean-eager",
                        help=f"comma-separated among {', '.join(VARIANTS)}, each optionally @CAP_GIB")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = model_config(args.scale)
    rows = make_rows(16 * ACCUM * args.baseline_batch, cfg, SEED + 7, 32)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"scale": args.scale, "cap_gib": args.cap_gib, "variants": []}
    cap(device, args.baseline_cap_gib)
    base = run_baseline(cfg, rows, args.baseline_batch, args.warmup, device, None, [], None)
    results["baseline"] = {"batch": args.baseline_batch, "cap_gib": args.baseline_cap_gib} | {
        k: v for k, v in base.items() if k != "step_s"}
    print(json.dumps(results["baseline"]), flush=True)
    for item in args.variants.split(","):
        name, _, at = item.partition("@")  # NAME@CAP_GIB runs that variant under its own cap (0: none)
        cap(device, float(at) if at else args.cap_gib)
        profile_to = args.out / f"lean-profile-{name}-kernels.txt" if name in ("lean", "lean-unfused") else None
        found = variant(cfg, rows, args.budget, name, device, args.warmup, args.steps, profile_to)
        found["variant"], found["cap_gib"] = name, float(at) if at else args.cap_gib
        if "frames_per_s" in found and "frames_per_s" in base:
            found["over_baseline"] = found["frames_per_s"] / base["frames_per_s"]
            found["median_over_baseline"] = found["frames_per_s_at_median_step"] / base["frames_per_s"]
        results["variants"].append(found)
        print(json.dumps({k: v for k, v in found.items() if k != "step_s"}), flush=True)
    (args.out / "lean-profile.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
