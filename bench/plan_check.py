"""The memory plan against measured peaks, and the lean recipe's loss against fp32 master, full size on one GPU.

    PYTHONPATH=/tmp/site python3 -m bench.plan_check --budgets 1500,3000,4500 --cap-gib 32 --track-steps 200

Part 1, plan: for each frame budget (padded talker positions a micro-batch) the
trainer's session (lean recipe, the GPU's Perf) trains a few steps on the
bench's synthetic rows under a per-process cap emulating Hemma's 32 GB card;
the peak allocated over the measured steps is compared with `plan_memory` for
the widest micro-batch those steps drew (converted to codec frames as the
plan converts a budget). The issue asks for predicted within 10% of measured.

Part 2, tracking: the same rows, the same order, `--track-steps` optimizer
steps under each recipe from the same random weights; the mean relative
difference of the EMA-smoothed losses is reported (the issue asks <= 2%).

Writes OUT/plan-check.json and appends a section to bench/RESULTS.md. A CPU
dry run: `--scale tiny --budgets 300,600 --track-steps 4 --cap-gib 0`.
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

from bench.train_synth import SynthData, make_rows, model_config
from bench.train_throughput import fresh_model, peak_gib, reset_memory, shape_of, sync
from qwen_train.plan import plan_memory
from qwen_train.plan.memory import TEXT_TOKENS_PER_FRAME
from qwen_train.spec import RunSpec, TrainConfig
from qwen_train.train.data.batches import RunData
from qwen_train.train.data.layout import SpecialIds
from qwen_train.train.heartbeat import Heartbeat
from qwen_train.train.session import Runtime, Session, assemble_session
from qwen_train.train.step import train_step

SEED = 1234
EMA = 0.9


def session(cfg: dict[str, Any], rows: list[Any], budget: int, recipe: str, device: torch.device,
            run_dir: Path, freeze: bool = False, accum: int = 1) -> Session:
    reset_memory(device)
    model = fresh_model(cfg, device, torch.float32)  # the recipe makes it bf16 where it says so
    data = SynthData(rows, cfg, SpecialIds.from_config(model.config))
    spec = RunSpec(name="plan", lane="benchmark", model="random-weights", bundle="synthetic",
                   train=TrainConfig(frame_budget=budget, grad_accum=accum, lr=2e-5, weight_decay=0.01,
                                     max_steps=100_000, seed=SEED, recipe=recipe,  # type: ignore[arg-type]
                                     freeze_text_embedding=freeze))
    heartbeat = Heartbeat(run_dir, "plan", "plan", spec.train.max_steps)
    return assemble_session(spec, run_dir, heartbeat, Runtime.for_spec(spec, {}), model,
                            RunData(data, data, Path("synthetic"), "synthetic"))


def context_gib(device: torch.device) -> float | None:
    """What NVML says this process holds beyond torch's reserved pool: the context the plan adds."""
    if device.type != "cuda":
        return None
    import pynvml

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
    mine = [p.usedGpuMemory for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle) if p.pid == os.getpid()]
    pynvml.nvmlShutdown()
    return (mine[0] - torch.cuda.memory_reserved()) / 2**30 if mine and mine[0] else None


def measure_peak(cfg: dict[str, Any], rows: list[Any], budget: int, recipe: str, device: torch.device,
                 warmup: int, steps: int, freeze: bool = False, accum: int = 1) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        s = session(cfg, rows, budget, recipe, device, Path(tmp), freeze, accum)
        try:
            for _ in range(warmup):
                train_step(s)
            sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            drawn: list[list[int]] = []
            start = time.perf_counter()
            for _ in range(steps):
                train_step(s)
                drawn += s.progress.drawn
            sync(device)
            elapsed = time.perf_counter() - start
        except torch.OutOfMemoryError as exc:
            return {"budget": budget, "oom": str(exc).splitlines()[0]}
        shape = shape_of(rows, drawn, s.perf.pad_multiple)
        widest = int(shape["max_positions"])
        plan = plan_memory(cfg, recipe, frames=max(1, int(widest / (1 + TEXT_TOKENS_PER_FRAME))),
                           freeze_text_embedding=freeze, grad_accum=accum)
        measured = peak_gib(device)
        out: dict[str, Any] = {"budget": budget, "recipe": recipe, "frozen_text_embedding": freeze, "accum": accum,
                               "widest_positions": widest, "padding_share": shape["padding_share"],
                               "context_gib": context_gib(device), "seconds": elapsed,
                               "predicted_gib": plan.allocated_bytes / 2**30, "parts_gib": {
                                   k: v / 2**30 for k, v in plan.parts.items()},
                               "frames_per_s": sum(rows[i].frames for b in drawn for i in b) / elapsed} | measured
        if measured:
            out["predicted_over_measured"] = out["predicted_gib"] / measured["peak_allocated_gib"]
        del s
        return out


def smoothed(values: list[float]) -> list[float]:
    out, ema = [], values[0]
    for value in values:
        ema = EMA * ema + (1 - EMA) * value
        out.append(ema)
    return out


def track(cfg: dict[str, Any], rows: list[Any], budget: int, steps: int, device: torch.device) -> dict[str, Any]:
    """Per-step losses of each recipe from the same weights over the same batches."""
    curves: dict[str, list[float]] = {}
    for recipe in ("fp32-master", "lean"):
        with tempfile.TemporaryDirectory() as tmp:
            s = session(cfg, rows, budget, recipe, device, Path(tmp))
            losses = []
            for _ in range(steps):
                losses.append(float(train_step(s).losses.total))
            curves[recipe] = losses
            del s
    master, lean = smoothed(curves["fp32-master"]), smoothed(curves["lean"])
    diffs = [abs(a - b) / max(abs(a), 1e-8) for a, b in zip(master, lean, strict=True)]
    return {"steps": steps, "budget": budget, "ema": EMA, "mean_relative_difference": sum(diffs) / len(diffs),
            "max_relative_difference": max(diffs), "first": [curves["fp32-master"][0], curves["lean"][0]],
            "last_smoothed": [master[-1], lean[-1]], "curves": curves}


def cap(device: torch.device, gib: float) -> None:
    """A per-process memory cap emulating a smaller card (0: the whole card)."""
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, gib * 2**30 / total) if gib else 1.0)


def throughput(cfg: dict[str, Any], spec: str, device: torch.device, warmup: int) -> dict[str, Any]:
    """The lean recipe at a budget under one cap against the upstream recipe at a batch under another, one run."""
    from bench.train_throughput import run_baseline

    lean, base = spec.split(",")
    budget, lean_cap = (float(x) for x in lean.split("@"))
    batch, base_cap = (float(x) for x in base.split("@"))
    rows = make_rows(16 * 4 * int(batch), cfg, SEED + 7, 32)
    cap(device, base_cap)
    baseline = run_baseline(cfg, rows, int(batch), warmup, device, None, [], None)
    cap(device, lean_cap)
    ours = measure_peak(cfg, rows, int(budget), "lean", device, warmup, 8, accum=4)
    ratio = ours.get("frames_per_s", 0.0) / baseline["frames_per_s"] if "frames_per_s" in baseline else None
    return {"baseline": {"batch": batch, "cap_gib": base_cap} | {k: v for k, v in baseline.items() if k != "step_s"},
            "lean": {"budget": budget, "cap_gib": lean_cap} | ours, "lean_over_baseline_frames_per_s": ratio}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["full", "tiny"], default="full")
    parser.add_argument("--budgets", default="1500,3000,4500",
                        help="comma-separated; each RECIPE:BUDGET[:frozen] or BUDGET (the lean recipe)")
    parser.add_argument("--cap-gib", type=float, default=32.0, help="per-process cap (0: none)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--track-steps", type=int, default=200)
    parser.add_argument("--track-budget", type=int, default=1500)
    parser.add_argument("--throughput", default="", help="LEAN_BUDGET@CAP_GIB,BASELINE_BATCH@CAP_GIB: codec "
                        "frames/s of the lean recipe against the upstream recipe's, 4 micro-batches a step, same rows")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--markdown", type=Path, default=Path("bench/RESULTS.md"))
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cap(device, args.cap_gib)
    cfg = model_config(args.scale)
    rows = make_rows(400, cfg, SEED, 32)
    results: dict[str, Any] = {"scale": args.scale, "cap_gib": args.cap_gib, "plan": []}
    for item in (b for b in args.budgets.split(",") if b):
        fields = item.split(":")
        recipe, budget = (fields[0], int(fields[1])) if len(fields) > 1 else ("lean", int(fields[0]))
        results["plan"].append(measure_peak(cfg, rows, budget, recipe, device, args.warmup, args.steps,
                                            freeze=fields[-1] == "frozen"))
        print(json.dumps(results["plan"][-1]), flush=True)
    if args.throughput:
        results["throughput"] = throughput(cfg, args.throughput, device, args.warmup)
        print(json.dumps(results["throughput"]), flush=True)
        cap(device, args.cap_gib)
    if args.track_steps:
        results["tracking"] = track(cfg, rows, args.track_budget, args.track_steps, device)
        print(json.dumps({k: v for k, v in results["tracking"].items() if k != "curves"}), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "plan-check.json").write_text(json.dumps(results, indent=2))
    with args.markdown.open("a") as md:
        md.write(markdown(results))


def markdown(results: dict[str, Any]) -> str:
    lines = ["", f"## Memory plan vs measured ({results['scale']}, cap {results['cap_gib']} GiB)", "",
             "| recipe | budget | widest micro-batch | predicted GiB | measured peak GiB | predicted/measured |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in results["plan"]:
        recipe = r.get("recipe", "lean") + (" + frozen text embedding" if r.get("frozen_text_embedding") else "")
        if "oom" in r:
            lines.append(f"| {recipe} | {r['budget']} | out of memory | | | |")
            continue
        lines.append(f"| {recipe} | {r['budget']} | {r['widest_positions']} | {r['predicted_gib']:.2f} | "
                     f"{r.get('peak_allocated_gib', float('nan')):.2f} | {r.get('predicted_over_measured', 0):.3f} |")
    speed = results.get("throughput")
    if speed:
        base, lean = speed["baseline"], speed["lean"]
        lines += ["", f"Throughput, same rows, 4 micro-batches a step: upstream recipe at batch {base['batch']:.0f} "
                  f"under {base['cap_gib']:.0f} GiB {base.get('frames_per_s', 0):.0f} codec frames/s (peak "
                  f"{base.get('peak_allocated_gib', float('nan')):.1f} GiB); lean at budget {lean['budget']:.0f} "
                  f"under {lean['cap_gib']:.0f} GiB {lean.get('frames_per_s', 0):.0f} frames/s (peak "
                  f"{lean.get('peak_allocated_gib', float('nan')):.1f} GiB): "
                  f"{speed['lean_over_baseline_frames_per_s'] or 0:.2f}x."]
    tracking = results.get("tracking")
    if tracking:
        lines += ["", f"Lean vs fp32 master, {tracking['steps']} optimizer steps at budget {tracking['budget']}, "
                  f"same rows: mean relative difference of the EMA({tracking['ema']})-smoothed loss "
                  f"{tracking['mean_relative_difference']:.4f} (max {tracking['max_relative_difference']:.4f})."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
