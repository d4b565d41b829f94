"""One rank of the multi-GPU benchmark, started by `accelerate launch` from bench/train_multi.py.

Every rank builds the same random-weight model (seeded; DDP also broadcasts
rank 0's weights when accelerate wraps it) and the same seeded pool of
synthetic rows, and hands both to the project's own `assemble_session`: the
cursor shards each global batch by rank exactly as in a real run. Two modes:

* `throughput`: warm-up steps (compilation happens there), then timed steps;
  codec frames are summed over every rank, and rank 0 writes the figures.
* `train`: the real train loop (`loop`: posture, durable checkpoints, losses
  file, heartbeat) and, with --resume, the real resume (`Checkpointer.load`)
  from the newest durable checkpoint first. The driver kills this mode
  mid-run and resumes it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bench.train_synth import SynthData, build_model, make_rows, model_config
from bench.train_throughput import compiled_graphs, sync
from qwen_train.spec import Posture, RunSpec, TrainConfig
from qwen_train.train.data.batches import RunData
from qwen_train.train.data.layout import SpecialIds
from qwen_train.train.heartbeat import Heartbeat
from qwen_train.train.loop import StopFlag, loop
from qwen_train.train.session import Runtime, Session, assemble_session
from qwen_train.train.step import train_step

SEED = 1234
ACCUM = 4


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["throughput", "train"])
    p.add_argument("--scale", choices=["full", "tiny"], default="full")
    p.add_argument("--batch", type=int, default=8, help="rows per GPU per micro-batch")
    p.add_argument("--rows", type=int, default=256, help="size of the seeded row pool")
    p.add_argument("--speakers", type=int, default=64)
    p.add_argument("--steps", type=int, default=6, help="throughput: timed steps; train: max_steps")
    p.add_argument("--warmup", type=int, default=3, help="throughput: steps before timing")
    p.add_argument("--checkpoint-every", type=int, default=3)
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    p.add_argument("--perf", default="{}", help="JSON overrides of the trainer's Perf")
    p.add_argument("--out", type=Path, help="throughput: where rank 0 writes its JSON")
    return p.parse_args()


def session(args: argparse.Namespace) -> Session:
    spec = RunSpec(name="multi", lane="benchmark", model="random-weights", bundle="synthetic",
                   train=TrainConfig(batch_size=args.batch, grad_accum=ACCUM, lr=2e-5, weight_decay=0.01,
                                     max_steps=args.steps if args.mode == "train" else 100_000, warmup_steps=2,
                                     seed=SEED, precision=args.precision),
                   posture=Posture(checkpoint_every=args.checkpoint_every, eval_every=1_000_000, keep_last=3))
    overrides = json.loads(args.perf)
    if args.mode == "throughput":  # nothing is checkpointed: don't pin 21 GiB of host buffers inside the timing
        overrides.setdefault("async_checkpoint", False)
    runtime = Runtime.for_spec(spec, overrides)
    cfg = model_config(args.scale)
    model = build_model(cfg, runtime.accelerator.device, torch.float32, SEED)  # fp32 master weights, bf16 autocast
    data = SynthData(make_rows(args.rows, cfg, SEED, args.speakers), cfg, SpecialIds.from_config(model.config))
    args.run_dir.mkdir(parents=True, exist_ok=True)
    heartbeat = Heartbeat(args.run_dir, "multi", "bench", spec.train.max_steps)
    return assemble_session(spec, args.run_dir, heartbeat, runtime, model,
                            RunData(data, data, Path("synthetic"), "synthetic"))


def throughput(s: Session, args: argparse.Namespace) -> None:
    """Frames per second over every rank; each step ends in the guard's one host sync, so steps are honest.

    A step in which any rank compiled a graph (a new shape after the warm-up) is reported but left out of
    the steady figure, which is what the scaling comparison uses: compilation is a one-off, not scaling.
    """
    warm = time.perf_counter()
    for _ in range(args.warmup):
        train_step(s)
    sync(s.device)
    warm_s = time.perf_counter() - warm
    if s.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(s.device)
    s.accelerator.wait_for_everyone()
    frames, compiled, steps, refused = [], [], [], 0
    start = time.perf_counter()
    for _ in range(args.steps):
        graphs = compiled_graphs()
        outcome = train_step(s)
        steps.append(time.perf_counter() - start - sum(steps))
        frames.append(float(outcome.frames))
        compiled.append(float(compiled_graphs() - graphs))
        refused += bool(outcome.problems)
    sync(s.device)
    elapsed = time.perf_counter() - start
    per_step = torch.tensor([frames, compiled], device=s.device)
    frames_all = s.accelerator.reduce(per_step[0].clone(), reduction="sum").tolist()
    compiled_any = s.accelerator.reduce(per_step[1].clone(), reduction="sum").tolist()
    peak = torch.cuda.max_memory_reserved(s.device) / 2**30 if s.device.type == "cuda" else 0.0
    peaks = s.accelerator.gather(torch.tensor([peak], device=s.device)).tolist()
    if s.is_main and args.out is not None:
        steady = [i for i, c in enumerate(compiled_any) if c == 0]
        steady_s = sum(steps[i] for i in steady)
        result: dict[str, Any] = {
            "world_size": s.accelerator.num_processes, "per_gpu_batch": args.batch, "accum": ACCUM,
            "steps": args.steps, "warmup_s": warm_s, "elapsed_s": elapsed, "frames": int(sum(frames_all)),
            "frames_per_s": sum(frames_all) / elapsed, "step_s": steps, "step_frames": frames_all,
            "compiled_steps": [i for i, c in enumerate(compiled_any) if c > 0],
            "steady_frames_per_s": sum(frames_all[i] for i in steady) / steady_s if steady else None,
            "refused_steps": refused, "peak_reserved_gib_per_rank": peaks, "perf": vars(s.perf),
        }
        args.out.write_text(json.dumps(result, indent=2))


def main() -> int:
    args = parse()
    s = session(args)
    if args.mode == "throughput":
        throughput(s, args)
        code = 0
    else:
        stop = StopFlag()
        stop.install()
        s.ckpt.load(resume=args.resume)
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(log_dir=str(args.run_dir / "tensorboard")) as writer:
            code = loop(s, stop, writer)
    if s.prefetcher is not None:
        s.prefetcher.close()
    s.accelerator.wait_for_everyone()
    s.accelerator.end_training()
    return code


if __name__ == "__main__":
    sys.exit(main())
