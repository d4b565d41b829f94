"""Full-size training throughput on one GPU: the upstream recipe's step against ours, in one run.

One command on the GPU machine (see README, Benchmarks):

    PYTHONPATH=/tmp/site python3 -m bench.train_throughput --out bench/results

For each batch size it trains the real 1.7B architecture (random weights,
built on the GPU) on one seeded pool of synthetic rows, first with the
upstream recipe's step (train_synth.py says how it is reproduced), then with
the project's trainer: `assemble_session` + `train_step` (guard on, aligned
losses, fp32 master weights with bf16 autocast) with the GPU speed defaults
of `Perf` (length buckets, fused AdamW, compiled layers, prefetching
workers). Warm-up steps first (compilation happens there), then one timed pass
over the whole pool for each, so both train exactly the same rows. Then the
checkpoint stall (a synchronous `Checkpointer.write` vs. the background writer),
and the daemon's sampler, which ran in its own process the whole time.

`--frame-budget N` trains ours in micro-batches of at most N padded talker
positions (`train.frame_budget`) instead of `batch` rows, over the same pool
(the baseline keeps its fixed batch: the upstream recipe has no budget);
`--rows riksdag` draws the pool's sizes as Riksdag clips run (2-30 s,
long-tailed) instead of the bench's 25-190 frames.

Printed last, and written to OUT/gpu-train.json and bench/RESULTS.md. A CPU
dry run of the same code: `--scale tiny --batches 2 --steps 1 --warmup 1`.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import torch

from bench.gpu_probe import environment, matmul_ceiling, profiled
from bench.train_report import report, summarize_sampler
from bench.train_synth import (
    SynthData,
    build_model,
    make_rows,
    model_config,
    step_flops,
    upstream_batch,
    upstream_micro_step,
)
from qwen_train.spec import RunSpec, TrainConfig
from qwen_train.train.checkpointing.checkpoint import read_meta
from qwen_train.train.data.batches import RunData
from qwen_train.train.data.budget import padded
from qwen_train.train.data.layout import SpecialIds
from qwen_train.train.heartbeat import Heartbeat
from qwen_train.train.session import Runtime, Session, assemble_session
from qwen_train.train.step import train_step

ACCUM = 4
SEED = 1234
_BASE: dict[str, Any] = {}


def fresh_model(cfg: dict[str, Any], device: torch.device, dtype: torch.dtype) -> Any:
    """The same random weights for every run: built on the device once, kept on the host, copied per run."""
    if "model" not in _BASE:
        _BASE["model"] = build_model(cfg, device, torch.float32, SEED).to("cpu")
        _BASE["model"].supported_speakers = list(_BASE["model"].supported_speakers)  # dict_keys: not copyable
    return copy.deepcopy(_BASE["model"]).to(device=device, dtype=dtype)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def reset_memory(device: torch.device) -> None:
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: torch.device) -> dict[str, float]:
    if device.type != "cuda":
        return {}
    return {"peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
            "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30}


def measure(rows: list[Any], drawn: list[list[int]], elapsed: float, cfg: dict[str, Any],
            ceiling: float | None) -> dict[str, Any]:
    picked = [rows[i] for batch in drawn for i in batch]
    frames = sum(r.frames for r in picked)
    tokens = sum(r.length for r in picked)
    flops = step_flops(cfg, [r.length for r in picked], [r.frames for r in picked])
    out = {"rows": len(picked), "seconds": elapsed, "frames_per_s": frames / elapsed, "tokens_per_s": tokens / elapsed,
           "tflops": flops / elapsed / 1e12}
    if ceiling:
        out["mfu"] = flops / elapsed / 1e12 / ceiling
    return out


def run_baseline(cfg: dict[str, Any], rows: list[Any], batch: int, warmup: int, device: torch.device,
                 ceiling: float | None, phases: list[dict[str, Any]], profile: Path | None) -> dict[str, Any]:
    from accelerate import Accelerator

    reset_memory(device)
    model = fresh_model(cfg, device, torch.bfloat16)
    accelerator = Accelerator(gradient_accumulation_steps=ACCUM, mixed_precision="bf16", cpu=device.type == "cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    gen = torch.Generator().manual_seed(SEED)
    try:
        for epoch in range(2):
            order = torch.randperm(len(rows), generator=gen).tolist()
            batches = [order[i : i + batch] for i in range(0, len(order) - batch + 1, batch)]
            if epoch == 0:
                batches = (batches * (1 + warmup * ACCUM // max(1, len(batches))))[: warmup * ACCUM]
            sync(device)
            if epoch == 1 and device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            wall, start, steps = time.time(), time.perf_counter(), []
            for i, indices in enumerate(batches):
                upstream_micro_step(model, upstream_batch([rows[i] for i in indices], cfg), accelerator, optimizer)
                if i % ACCUM == ACCUM - 1:
                    sync(device)
                    steps.append(time.perf_counter() - start - sum(steps))
            sync(device)
            elapsed = time.perf_counter() - start
        phases.append({"name": f"baseline b{batch} timed", "start": wall, "end": time.time()})
        result = measure(rows, batches, elapsed, cfg, ceiling) | peak_gib(device) | {"step_s": steps}
        if profile is not None:
            order = torch.randperm(len(rows), generator=gen).tolist()
            micro = [order[i * batch : (i + 1) * batch] for i in range(ACCUM)]
            with profiled(profile / f"profile-baseline-b{batch}.txt", device):
                for indices in micro:
                    upstream_micro_step(model, upstream_batch([rows[i] for i in indices], cfg), accelerator,
                                        optimizer)
                sync(device)
    except torch.OutOfMemoryError as exc:
        result = {"oom": str(exc).splitlines()[0]}
    del model, optimizer, accelerator
    return result


def ours_session(cfg: dict[str, Any], rows: list[Any], batch: int, device: torch.device, run_dir: Path,
                 overrides: dict[str, Any], frame_budget: int | None = None) -> Session:
    reset_memory(device)
    model = fresh_model(cfg, device, torch.float32)  # fp32 master weights: the precision policy
    data = SynthData(rows, cfg, SpecialIds.from_config(model.config))
    spec = RunSpec(name="bench", lane="benchmark", model="random-weights", bundle="synthetic",
                   train=TrainConfig(batch_size=batch, frame_budget=frame_budget, grad_accum=ACCUM, lr=2e-5,
                                     weight_decay=0.01, max_steps=100_000, seed=SEED, precision="bf16"))
    heartbeat = Heartbeat(run_dir, "bench", "bench", spec.train.max_steps)
    return assemble_session(spec, run_dir, heartbeat, Runtime.for_spec(spec, overrides), model,
                            RunData(data, data, Path("synthetic"), "synthetic"))


def compiled_graphs() -> int:
    """Graphs dynamo has compiled so far in this process (a compile inside the timed window shows here)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def run_ours(cfg: dict[str, Any], rows: list[Any], batch: int, warmup: int, device: torch.device,
             ceiling: float | None, overrides: dict[str, Any], run_dir: Path, phases: list[dict[str, Any]],
             profile: Path | None, frame_budget: int | None = None) -> tuple[dict[str, Any], Session]:
    s = ours_session(cfg, rows, batch, device, run_dir, overrides, frame_budget)
    p = s.progress
    start = time.perf_counter()
    for _ in range(warmup):
        train_step(s)
    sync(device)
    warm_s = time.perf_counter() - start
    p.cursor = msgspec.structs.replace(p.cursor, epoch=p.cursor.epoch + 1, position=0)  # timed: one whole epoch
    if p.cursor.batches_per_epoch < ACCUM:
        raise ValueError(f"the {len(rows)} rows make {p.cursor.batches_per_epoch} micro-batches per epoch, fewer "
                         f"than one optimizer step ({ACCUM}): more --steps or a smaller --frame-budget")
    if s.prefetcher is not None:
        s.prefetcher.prime(p.cursor, p.skip)  # as after any (re)start: the workers begin at the cursor
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    drawn: list[list[int]] = []
    refused = 0
    graphs = compiled_graphs()
    wall, start, steps = time.time(), time.perf_counter(), []
    for _ in range(p.cursor.batches_per_epoch // ACCUM):
        outcome = train_step(s)  # one host sync per step (the guard's), so per-step times are honest
        steps.append(time.perf_counter() - start - sum(steps))
        refused += bool(outcome.problems)
        drawn += p.drawn
    sync(device)
    elapsed = time.perf_counter() - start
    phases.append({"name": f"ours b{batch} timed", "start": wall, "end": time.time()})
    result = measure(rows, drawn, elapsed, cfg, ceiling) | peak_gib(device) | {"step_s": steps}
    if profile is not None:
        with profiled(profile / f"profile-ours-b{batch}.txt", device):
            train_step(s)
            sync(device)
    result |= shape_of(rows, drawn, s.perf.pad_multiple)
    result |= {"warmup_s": warm_s, "refused_steps": refused, "perf": vars(s.perf),
               "graphs_compiled_while_timed": compiled_graphs() - graphs,
               "prefetch_rebuilds": s.prefetcher.rebuilds if s.prefetcher else 0}
    return result, s


def shape_of(rows: list[Any], drawn: list[list[int]], pad_multiple: int) -> dict[str, Any]:
    """Rows per micro-batch and the share of processed positions that were padding, as collate padded them."""
    widths = [padded(max(rows[i].length for i in batch), pad_multiple) for batch in drawn]
    processed = sum(w * len(batch) for w, batch in zip(widths, drawn, strict=True))
    real = sum(rows[i].length for batch in drawn for i in batch)
    return {"rows_per_micro_batch": sum(map(len, drawn)) / max(1, len(drawn)),
            "max_positions": max((w * len(b) for w, b in zip(widths, drawn, strict=True)), default=0),
            "padding_share": (processed - real) / max(1, processed)}


def timed_steps(s: Session, device: torch.device, until: Any, limit: int) -> list[float]:
    """Train steps while `until()` holds (at most `limit`), each timed to its end on the device."""
    times = []
    while until() and len(times) < limit:
        start = time.perf_counter()
        train_step(s)
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def checkpoint_stall(s: Session, device: torch.device, root: Path, limit: int,
                     phases: list[dict[str, Any]]) -> dict[str, Any]:
    """Synchronous save vs. the background writer, on the full training state of session `s`.

    In the order a run meets them: the host buffers are pinned in the background
    (as the loop does after its first step) while training goes on; then one
    checkpoint the synchronous way; then one through the background writer,
    training on while it writes.
    """
    ckpt, writer = s.ckpt, s.ckpt.writer
    assert writer is not None
    out: dict[str, Any] = {"dir": str(root), "disk_free_gib": shutil.disk_usage(root).free / 2**30}
    out["step_s_before"] = timed_steps(s, device, lambda: True, 3)
    wall = time.time()
    ckpt.reserve()
    out["step_s_during_reserve"] = timed_steps(s, device, lambda: writer.busy, limit)
    writer.wait()
    out["reserve_s"] = writer.last_reserve_s
    out["pinned_host_gib"] = writer.host_bytes() / 2**30
    phases.append({"name": "pinning buffers (background)", "start": wall, "end": time.time()})
    ckpt.run_dir = root / "sync"
    sync(device)
    start = time.perf_counter()
    path = ckpt.write(background=False)
    out["sync_stall_s"] = time.perf_counter() - start
    assert path is not None
    out["state_bytes"] = (path / "state.pt").stat().st_size
    shutil.rmtree(ckpt.run_dir)
    ckpt.run_dir = root / "async"
    sync(device)
    wall = time.time()
    start = time.perf_counter()
    ckpt.write(background=True)
    out["async_stall_s"] = time.perf_counter() - start
    out["step_s_during_write"] = timed_steps(s, device, lambda: writer.busy, limit)
    waited = time.perf_counter()
    final = writer.wait() or sorted((ckpt.run_dir / "checkpoints").glob("step-*"))[-1]
    out["wait_after_steps_s"] = time.perf_counter() - waited
    phases.append({"name": "checkpoint write (background)", "start": wall, "end": time.time()})
    out["background_write_s"] = writer.last_write_s
    meta = read_meta(final)  # the full hash check re-reads tens of GiB; sizes and the manifest suffice here
    out["durable"] = meta.files["state.pt"].size == (final / "state.pt").stat().st_size
    out["async_state_bytes"] = meta.files["state.pt"].size
    shutil.rmtree(ckpt.run_dir)
    return out


def start_sampler(out_dir: Path, device: torch.device) -> subprocess.Popen[bytes] | None:
    if device.type != "cuda":
        return None
    cmd = [sys.executable, "-m", "bench.train_sampler", "--pid", str(os.getpid()), "--out",
           str(out_dir / "gpu-train-sampler.json")]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["full", "tiny"], default="full")
    parser.add_argument("--batches", default="8,32")
    parser.add_argument("--frame-budget", type=int, help="ours: micro-batches of at most this many padded talker "
                        "positions (train.frame_budget) instead of the batch's rows; the baseline keeps the batch")
    parser.add_argument("--rows", choices=["bench", "riksdag"], default="bench",
                        help="the row pool's sizes: the bench's 25-190 frames, or Riksdag-like 2-30 s clips")
    parser.add_argument("--steps", type=int, default=4, help="timed optimizer steps per run (x4 micro-batches)")
    parser.add_argument("--warmup", type=int, default=3, help="optimizer steps before timing")
    parser.add_argument("--speakers", type=int, default=64, help="voices in the row pool, one anchor each")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--markdown", type=Path, default=Path("bench/RESULTS.md"))
    parser.add_argument("--ckpt-dir", type=Path, default=Path(tempfile.gettempdir()) / "qwen-bench-ckpt")
    parser.add_argument("--no-checkpoint", action="store_true")
    parser.add_argument("--perf", default="{}", help="JSON overrides of the trainer's Perf for 'ours'")
    parser.add_argument("--profile", action="store_true", help="profile one step of each at the first batch size")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    args.ckpt_dir.mkdir(parents=True, exist_ok=True)
    cfg = model_config(args.scale)
    overrides = json.loads(args.perf)
    sampler = start_sampler(args.out, device)
    results: dict[str, Any] = {"environment": environment(device), "scale": args.scale, "accum": ACCUM,
                               "speakers": args.speakers, "steps": args.steps, "warmup": args.warmup,
                               "ceiling_tflops": matmul_ceiling(device), "runs": [], "phases": []}
    ceiling = results["ceiling_tflops"]
    for batch in [int(b) for b in args.batches.split(",")]:
        rows = make_rows(args.steps * ACCUM * batch, cfg, SEED + batch, args.speakers, args.rows)
        entry: dict[str, Any] = {"batch": batch, "rows": len(rows), "frame_budget": args.frame_budget,
                                 "row_shape": args.rows}
        profile = args.out if args.profile and not results["runs"] else None
        entry["baseline"] = run_baseline(cfg, rows, batch, args.warmup, device, ceiling, results["phases"], profile)
        print(f"baseline b{batch}: {entry['baseline']}", flush=True)
        attempt = dict(overrides)
        while True:
            try:
                entry["ours"], session = run_ours(cfg, rows, batch, args.warmup, device, ceiling, attempt,
                                                  args.ckpt_dir / f"run-b{batch}", results["phases"], profile,
                                                  args.frame_budget)
                break
            except torch.OutOfMemoryError as exc:
                if attempt.get("activation_checkpointing"):
                    entry["ours"], session = {"oom": str(exc).splitlines()[0]}, None
                    break
                print(f"ours b{batch}: out of memory, again with activation checkpointing", flush=True)
                attempt["activation_checkpointing"] = True
                gc.collect()
        print(f"ours b{batch}: {entry['ours']}", flush=True)
        if "frames_per_s" in entry["ours"] and "frames_per_s" in entry["baseline"]:
            entry["ratio"] = entry["ours"]["frames_per_s"] / entry["baseline"]["frames_per_s"]
        if session is not None and session.ckpt.writer is None and not args.no_checkpoint:
            print("checkpoint: skipped, this device's Perf has no background writer (--perf "
                  "'{\"async_checkpoint\": true}' adds one)", flush=True)
        elif session is not None and "checkpoint" not in results and not args.no_checkpoint:
            results["checkpoint"] = checkpoint_stall(session, device, args.ckpt_dir, 200, results["phases"])
            print(f"checkpoint: {results['checkpoint']}", flush=True)
        if session is not None and session.prefetcher is not None:
            session.prefetcher.close()
        del session
        results["runs"].append(entry)
        (args.out / "gpu-train.json").write_text(json.dumps(results, indent=2, default=str))  # partial, in case
    if sampler is not None:
        assert sampler.stdin is not None
        sampler.stdin.close()
        sampler.wait(timeout=120)
        results["sampler"] = summarize_sampler(args.out / "gpu-train-sampler.json", results["phases"])
    (args.out / "gpu-train.json").write_text(json.dumps(results, indent=2, default=str))
    text = report(results)
    args.markdown.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
