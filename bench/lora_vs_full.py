"""LoRA adapters against the full fine-tune: peak GPU memory and codec frames/s on the same rows, one GPU.

    python3 -m bench.lora_vs_full --budget 3000 --cap-gib 32 --recipes lean,fp32-master

For each recipe, the trainer's own session (assemble_session, the GPU's Perf:
compiled layers, prefetch, the frame budget) trains the bench's synthetic
rows (bench/train_synth.py) from the same random weights, once as a full
fine-tune and once with the spec's default LoRA adapter (train.adapter,
rank `--rank`); the rows, their order and the budget are the same for both,
so the two draw the same micro-batches. Under a per-process cap emulating
Hemma's 32 GB card (0: the whole card). After `--warmup` steps (compilation)
it times `--steps` optimizer steps and reports per mode: the peak allocated
and reserved, the memory plan's prediction for the widest micro-batch drawn
(qwen_train.plan, the figure the daemon admits by), codec frames/s and seconds
at the median step (a graph recompiled inside the window costs one step tens of
seconds; the window's own rate is kept beside it), trainable parameters and the
checkpoint state's bytes (adapter only for LoRA), and the ratios LoRA / full. A mode that runs out of memory says so.

Writes OUT/lora-vs-full.json, prints one JSON line per measurement and a
markdown table at the end (for bench/RESULTS.md; `--markdown` appends it).
A CPU dry run: `--scale tiny --budget 600 --steps 2 --warmup 1 --cap-gib 0`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.plan_check import cap
from bench.train_synth import SynthData, make_rows, model_config
from bench.train_throughput import fresh_model, peak_gib, reset_memory, shape_of, sync
from qwen_train.plan import plan_memory
from qwen_train.plan.memory import TEXT_TOKENS_PER_FRAME
from qwen_train.spec import Adapter, RunSpec, TrainConfig
from qwen_train.train.data.batches import RunData
from qwen_train.train.data.layout import SpecialIds
from qwen_train.train.heartbeat import Heartbeat
from qwen_train.train.recipes.adapter import model_state
from qwen_train.train.session import Runtime, Session, assemble_session
from qwen_train.train.step import train_step

SEED = 1234
LORA_LR = 2e-4  # an adapter's usual learning rate; the full fine-tune's default is 2e-5


def make_spec(budget: int, recipe: str, adapter: Adapter | None, accum: int = 1) -> RunSpec:
    train = TrainConfig(frame_budget=budget, lr=2e-5 if adapter is None else LORA_LR, weight_decay=0.01,
                        max_steps=100_000, seed=SEED, recipe=recipe, adapter=adapter,  # type: ignore[arg-type]
                        grad_accum=accum)
    return RunSpec(name="lora-vs-full", lane="benchmark", model="random-weights", bundle="synthetic", train=train)


def session(cfg: dict[str, Any], rows: list[Any], spec: RunSpec, device: torch.device, run_dir: Path) -> Session:
    reset_memory(device)
    model = fresh_model(cfg, device, torch.float32)  # the recipe makes it bf16 where it says so
    data = SynthData(rows, cfg, SpecialIds.from_config(model.config))
    heartbeat = Heartbeat(run_dir, spec.name, "bench", spec.train.max_steps)
    return assemble_session(spec, run_dir, heartbeat, Runtime.for_spec(spec, {}), model,
                            RunData(data, data, Path("synthetic"), "synthetic"))


def state_bytes(s: Session) -> int:
    """Tensor bytes of what a checkpoint holds of the model and optimizer (the adapter only, for LoRA)."""
    tensors = list(model_state(s.model, s.spec).values())
    tensors += [t for entry in s.optimizer.state_dict()["state"].values() for t in entry.values()
                if isinstance(t, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors)


Steps = list[list[list[int]]]  # each timed step's micro-batches, each a list of row indices


def timed(s: Session, device: torch.device, warmup: int, steps: int) -> tuple[Steps, list[float], list[float]]:
    """Warm up (compilation), reset the peak, then time `steps` optimizer steps, each to its end on the device; the
    batches drawn each step, each step's seconds, and every step's loss."""
    losses = [float(train_step(s).losses.total) for _ in range(warmup)]
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    drawn: Steps = []
    seconds: list[float] = []
    for _ in range(steps):
        start = time.perf_counter()
        losses.append(float(train_step(s).losses.total))  # the float() waits for the step's loss
        sync(device)
        seconds.append(time.perf_counter() - start)
        drawn.append([list(batch) for batch in s.progress.drawn])
    return drawn, seconds, losses


def rates(rows: list[Any], drawn: Steps, seconds: list[float]) -> dict[str, Any]:
    """Codec frames/s over the whole window and at the median step: a graph recompiled for a new shape inside the
    window costs one step tens of seconds, which the window's figure carries and the median's does not."""
    frames = [sum(rows[i].frames for batch in step for i in batch) for step in drawn]
    order = sorted(range(len(seconds)), key=seconds.__getitem__)
    middle = order[len(order) // 2]
    return {"frames_per_s": frames[middle] / seconds[middle], "window_frames_per_s": sum(frames) / sum(seconds),
            "seconds_per_step": seconds[middle], "slowest_step_s": max(seconds), "step_seconds": seconds}


def measure(cfg: dict[str, Any], rows: list[Any], spec: RunSpec, device: torch.device, warmup: int,
            steps: int) -> dict[str, Any]:
    mode, recipe = spec.train.mode, spec.train.recipe
    with tempfile.TemporaryDirectory() as tmp:
        try:
            s = session(cfg, rows, spec, device, Path(tmp))
            drawn, seconds, losses = timed(s, device, warmup, steps)
        except torch.OutOfMemoryError as exc:
            return {"mode": mode, "recipe": recipe, "oom": str(exc).splitlines()[0]} | peak_gib(device)
        shape = shape_of(rows, [batch for step in drawn for batch in step], s.perf.pad_multiple)
        frames = max(1, int(int(shape["max_positions"]) / (1 + TEXT_TOKENS_PER_FRAME)))
        plan = plan_memory(cfg, recipe, frames, adapter=spec.train.adapter, grad_accum=spec.train.grad_accum)
        trainable = sum(p.numel() for p in s.model.parameters() if p.requires_grad)
        out = {"mode": mode, "recipe": recipe, "budget": spec.train.frame_budget, "steps": steps,
               "grad_accum": spec.train.grad_accum,
               "trainable_params": trainable, "plan_trainable_params": plan.trainable_params,
               "checkpoint_state_bytes": state_bytes(s), "widest_positions": shape["max_positions"],
               "padding_share": shape["padding_share"], **rates(rows, drawn, seconds),
               "predicted_gib": plan.allocated_bytes / 2**30, "first_loss": losses[0], "last_loss": losses[-1],
               "compiled": s.perf.compile_layers} | peak_gib(device)
        if "peak_allocated_gib" in out:
            out["predicted_over_measured"] = out["predicted_gib"] / out["peak_allocated_gib"]
        del s
        return out


def compare(full: dict[str, Any], lora: dict[str, Any]) -> dict[str, Any]:
    """LoRA over full, for each figure both measured (none when either ran out of memory)."""
    ratios: dict[str, Any] = {}
    if "oom" in full or "oom" in lora:
        return ratios
    for key in ("peak_allocated_gib", "peak_reserved_gib", "frames_per_s", "seconds_per_step",
                "checkpoint_state_bytes"):
        if key in full and key in lora and full[key]:
            ratios[f"lora_over_full_{key}"] = lora[key] / full[key]
    return ratios


def markdown(results: dict[str, Any]) -> str:
    lines = ["", f"## LoRA vs full fine-tune ({results['scale']}, budget {results['budget']} x "
             f"{results['accum']} micro-batches, cap {results['cap_gib']} GiB, rank {results['rank']}, "
             f"{results['device']})", "",
             "| recipe | mode | trainable params | peak allocated GiB | peak reserved GiB | planned GiB | "
             "codec frames/s, median step | over the window | median s/step | slowest step s | checkpoint state MiB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results["runs"]:
        if "oom" in r:
            lines.append(f"| {r['recipe']} | {r['mode']} | | out of memory | | | | | | | |")
            continue
        lines.append(f"| {r['recipe']} | {r['mode']} | {r['trainable_params'] / 1e6:.1f} M | "
                     f"{r.get('peak_allocated_gib', float('nan')):.2f} | {r.get('peak_reserved_gib', float('nan')):.2f}"
                     f" | {r['predicted_gib']:.2f} | {r['frames_per_s']:.0f} | {r['window_frames_per_s']:.0f} | "
                     f"{r['seconds_per_step']:.3f} | {r['slowest_step_s']:.2f} | "
                     f"{r['checkpoint_state_bytes'] / 2**20:.1f} |")
    for recipe, ratios in results["ratios"].items():
        said = ", ".join(f"{k.removeprefix('lora_over_full_')} {v:.3g}x" for k, v in ratios.items())
        lines.append(f"\nLoRA / full under {recipe}: {said or 'not comparable (a mode ran out of memory)'}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["full", "tiny"], default="full")
    parser.add_argument("--budget", type=int, default=3000, help="frame budget: padded talker positions a micro-batch")
    parser.add_argument("--recipes", default="lean", help="comma-separated: lean, fp32-master")
    parser.add_argument("--rank", type=int, default=Adapter().rank)
    parser.add_argument("--cap-gib", type=float, default=32.0, help="per-process cap (0: none)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--accum", type=int, default=1, help="micro-batches an optimizer step (grad_accum)")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--markdown", type=Path, help="also append the table to this file (e.g. bench/RESULTS.md)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cap(device, args.cap_gib)
    cfg = model_config(args.scale)
    rows = make_rows(400, cfg, SEED, 32)
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    results: dict[str, Any] = {"scale": args.scale, "budget": args.budget, "cap_gib": args.cap_gib,
                               "rank": args.rank, "accum": args.accum, "device": name, "torch": torch.__version__,
                               "runs": [], "ratios": {}}
    for recipe in (r for r in args.recipes.split(",") if r):
        pair = []
        for adapter in (None, Adapter(rank=args.rank, alpha=2 * args.rank)):
            spec = make_spec(args.budget, recipe, adapter, args.accum)
            pair.append(measure(cfg, rows, spec, device, args.warmup, args.steps))
            print(json.dumps(pair[-1]), flush=True)
        results["runs"] += pair
        results["ratios"][recipe] = compare(*pair)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"lora-vs-full-{args.scale}.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    print(table)
    if args.markdown:
        with args.markdown.open("a") as md:
            md.write(table)


if __name__ == "__main__":
    main()
