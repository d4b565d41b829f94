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
from qwen_train.train.data import RunData
from qwen_train.train.heartbeat import Heartbeat
from qwen_train.train.layout import SpecialIds
from qwen_train.train.session import Runtime, Session, assemble_session
from qwen_train.train.step import train_step

SEED = 1234
EMA = 0.9


def session(cfg: dict[str, Any], rows: list[Any], budget: int, recipe: str, device: torch.device,
            run_dir: Path) -> Session:
    reset_memory(device)
    model = fresh_model(cfg, device, torch.float32)  # the recipe makes it bf16 where it says so
    data = SynthData(rows, cfg, SpecialIds.from_config(model.config))
    spec = RunSpec(name="plan", lane="benchmark", model="random-weights", bundle="synthetic",
                   train=TrainConfig(frame_budget=budget, grad_accum=1, lr=2e-5, weight_decay=0.01,
                                     max_steps=100_000, seed=SEED, recipe=recipe))  # type: ignore[arg-type]
    heartbeat = Heartbeat(run_dir, "plan", "plan", spec.train.max_steps)
    return assemble_session(spec, run_dir, heartbeat, Runtime.for_spec(spec, {}), model,
                            RunData(data, data, Path("synthetic"), "synthetic"))


def measure_peak(cfg: dict[str, Any], rows: list[Any], budget: int, recipe: str, device: torch.device,
                 warmup: int, steps: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        s = session(cfg, rows, budget, recipe, device, Path(tmp))
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
        plan = plan_memory(cfg, recipe, frames=max(1, int(widest / (1 + TEXT_TOKENS_PER_FRAME))))
        measured = peak_gib(device)
        out: dict[str, Any] = {"budget": budget, "widest_positions": widest, "padding_share": shape["padding_share"],
                               "predicted_gib": plan.peak_bytes / 2**30, "parts_gib": {
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["full", "tiny"], default="full")
    parser.add_argument("--budgets", default="1500,3000,4500")
    parser.add_argument("--cap-gib", type=float, default=32.0, help="per-process cap (0: none)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--track-steps", type=int, default=200)
    parser.add_argument("--track-budget", type=int, default=1500)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--markdown", type=Path, default=Path("bench/RESULTS.md"))
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda" and args.cap_gib:
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.cap_gib * 2**30 / total))
    cfg = model_config(args.scale)
    rows = make_rows(400, cfg, SEED, 32)
    results: dict[str, Any] = {"scale": args.scale, "cap_gib": args.cap_gib, "recipe": "lean", "plan": []}
    for budget in (int(b) for b in args.budgets.split(",")):
        results["plan"].append(measure_peak(cfg, rows, budget, "lean", device, args.warmup, args.steps))
        print(json.dumps(results["plan"][-1]), flush=True)
    if args.track_steps:
        results["tracking"] = track(cfg, rows, args.track_budget, args.track_steps, device)
        print(json.dumps({k: v for k, v in results["tracking"].items() if k != "curves"}), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "plan-check.json").write_text(json.dumps(results, indent=2))
    with args.markdown.open("a") as md:
        md.write(markdown(results))


def markdown(results: dict[str, Any]) -> str:
    lines = ["", f"## Memory plan vs measured ({results['scale']}, lean recipe, cap {results['cap_gib']} GiB)", "",
             "| budget | widest micro-batch | predicted GiB | measured peak GiB | predicted/measured | frames/s |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in results["plan"]:
        if "oom" in r:
            lines.append(f"| {r['budget']} | out of memory | | | | |")
            continue
        lines.append(f"| {r['budget']} | {r['widest_positions']} | {r['predicted_gib']:.2f} | "
                     f"{r.get('peak_allocated_gib', float('nan')):.2f} | {r.get('predicted_over_measured', 0):.3f} | "
                     f"{r['frames_per_s']:.0f} |")
    tracking = results.get("tracking")
    if tracking:
        lines += ["", f"Lean vs fp32 master, {tracking['steps']} optimizer steps at budget {tracking['budget']}, "
                  f"same rows: mean relative difference of the EMA({tracking['ema']})-smoothed loss "
                  f"{tracking['mean_relative_difference']:.4f} (max {tracking['max_relative_difference']:.4f})."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
