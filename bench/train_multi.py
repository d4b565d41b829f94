"""Several GPUs: scaling, and a killed run that resumes exactly, on the full-size architecture.

One command on the GPU machine (see README, Benchmarks):

    PYTHONPATH=/tmp/site python3 -m bench.train_multi --gpus 2 --out bench/results

Every training process is started by `accelerate launch` (NCCL between GPUs,
one process per GPU) running bench/train_multi_worker.py, which hands the
real 1.7B architecture (random weights) and a seeded pool of synthetic rows
to the project's own session, loop, checkpoint and resume code. Phases:

* `scaling`: codec frames/s with 1 GPU and with `--gpus` GPUs at the same
  per-GPU batch (warm-up steps first; compilation happens there).
* `resume`: an uninterrupted run of `--steps` steps on `--gpus` GPUs (the
  reference), then the same run SIGKILLed (every rank) once its checkpoint at
  `--checkpoint-every` is durable, then `--resume`: its per-step losses must
  match the reference's within the bf16 tolerance, and the checkpoint's
  cursor must be the sharded one (world size = GPUs).

Meanwhile the daemon's sampler (bench/train_sampler.py) samples every GPU in
its own process; its samples are summarised per phase by the daemon's own
summary code, one set of metrics per GPU. NVLink multicast stays off
(NCCL_NVLS_ENABLE=0 and friends) in every process started here.

Written to OUT/gpu-multi.json and appended to bench/RESULTS.md. A CPU dry run
of the same code (gloo, two processes): `--cpu --scale tiny --gpus 2`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.train_multi_report import compare_losses, markdown, sampler_per_gpu
from qwen_train.train.checkpointing.checkpoint import list_checkpoints, read_meta

NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
TOLERANCE = 2.0**-7  # one bf16 ulp, relative: the step's bf16 matmuls agree to about this across launches


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpus", type=int, default=2)
    p.add_argument("--cpu", action="store_true", help="gloo on CPU processes instead of GPUs (dry run)")
    p.add_argument("--scale", choices=["full", "tiny"], default="full")
    p.add_argument("--batch", type=int, default=8, help="rows per GPU per micro-batch (x4 accumulation)")
    p.add_argument("--phases", default="scaling,resume")
    p.add_argument("--scaling-steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--steps", type=int, default=6, help="resume: total steps of each run")
    p.add_argument("--checkpoint-every", type=int, default=3)
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "qwen-multi")
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    p.add_argument("--markdown", type=Path, default=Path("bench/RESULTS.md"))
    p.add_argument("--name", help="results file name without .json (default gpu-multi, cpu-multi with --cpu)")
    p.add_argument("--timeout", type=float, default=1500.0, help="seconds one launch may take")
    return p.parse_args()


def environment(args: argparse.Namespace) -> dict[str, str]:
    env = {**os.environ, **NO_MULTICAST, "PYTHONUNBUFFERED": "1", "PYTHONPATH": _pythonpath()}
    if args.cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def _pythonpath() -> str:
    here = str(Path(__file__).resolve().parent.parent)
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(parts if here in parts else [*parts, here])


def launch(args: argparse.Namespace, processes: int, worker: list[str], extra_env: dict[str, str] | None = None,
           log: Path | None = None) -> subprocess.Popen[bytes]:
    """`accelerate launch` of one worker per GPU, in its own process group (so a kill reaches every rank)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
    if processes > 1:
        cmd.append("--multi_gpu")
    cmd += ["-m", "bench.train_multi_worker", *worker, "--scale", args.scale, "--batch", str(args.batch)]
    out = open(log, "ab") if log is not None else None  # noqa: SIM115 - handed to the child, closed by finish()
    print(f"launch ({processes} process(es)): {' '.join(worker)}", flush=True)
    return subprocess.Popen(cmd, env={**environment(args), **(extra_env or {})}, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


def finish(proc: subprocess.Popen[bytes], timeout: float, what: str, log: Path) -> None:
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise RuntimeError(f"{what}: still running after {timeout:.0f} s; see {log}") from None
    if code != 0:
        tail = log.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"{what}: exit code {code}; the end of {log}:\n{tail}")


def phase(phases: list[dict[str, Any]], name: str, start: float) -> None:
    phases.append({"name": name, "start": start, "end": time.time()})


def scaling(args: argparse.Namespace, phases: list[dict[str, Any]]) -> dict[str, Any]:
    """Frames/s on 1 process and on `--gpus` processes, same per-GPU batch and the same warm-up."""
    runs = {}
    for processes in sorted({1, args.gpus}):
        out, log = args.work / f"throughput-{processes}.json", args.work / f"throughput-{processes}.log"
        start = time.time()
        proc = launch(args, processes, ["throughput", "--run-dir", str(args.work / f"tp-{processes}"),
                                        "--steps", str(args.scaling_steps), "--warmup", str(args.warmup),
                                        "--out", str(out)], log=log)
        finish(proc, args.timeout, f"throughput on {processes}", log)
        phase(phases, f"throughput {processes} GPU", start)
        runs[str(processes)] = json.loads(out.read_text())
        run = runs[str(processes)]
        print(f"throughput {processes}: {run['frames_per_s']:.0f} frames/s, steady {run['steady_frames_per_s']}, "
              f"compiled in steps {run['compiled_steps']}", flush=True)
    key = "steady_frames_per_s" if all(r.get("steady_frames_per_s") for r in runs.values()) else "frames_per_s"
    one, many = runs["1"][key], runs[str(args.gpus)][key]
    return {"runs": runs, "figure": key, "speedup": many / one, "efficiency": many / one / args.gpus}


def train_args(args: argparse.Namespace, run_dir: Path, *extra: str) -> list[str]:
    return ["train", "--run-dir", str(run_dir), "--steps", str(args.steps),
            "--checkpoint-every", str(args.checkpoint_every), *extra]


def resume(args: argparse.Namespace, phases: list[dict[str, Any]]) -> dict[str, Any]:
    """Reference run, killed run, resumed run; losses compared step by step."""
    ref, killed = args.work / "ref", args.work / "killed"
    start = time.time()
    finish(launch(args, args.gpus, train_args(args, ref), log=args.work / "ref.log"), args.timeout, "reference",
           args.work / "ref.log")
    phase(phases, "reference run", start)
    shutil.rmtree(ref / "checkpoints")  # tens of GiB each; the losses are what is compared
    at = args.checkpoint_every
    start = time.time()
    proc = launch(args, args.gpus, train_args(args, killed), {"QWEN_TEST_PAUSE": f"checkpoint-before-prune@{at}:900"},
                  log=args.work / "killed.log")
    durable = wait_for_checkpoint(killed, at, proc, args.timeout)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    phase(phases, "killed run", start)
    kept = [c.name for c in list_checkpoints(killed)]
    cursor = read_meta(durable).cursor
    start = time.time()
    finish(launch(args, args.gpus, train_args(args, killed, "--resume"), log=args.work / "resumed.log"),
           args.timeout, "resumed", args.work / "resumed.log")
    phase(phases, "resumed run", start)
    result = compare_losses(ref / "losses.jsonl", killed / "losses.jsonl", at, TOLERANCE)
    return result | {"killed_after_durable": durable.name, "kept_at_kill": kept,
                     "cursor_world_size": cursor.world_size, "cursor_position": cursor.position,
                     "cursor_batch_size": cursor.batch_size}


def wait_for_checkpoint(run_dir: Path, step: int, proc: subprocess.Popen[bytes], timeout: float) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [c for c in list_checkpoints(run_dir) if int(c.name.split("-")[1]) == step]
        if found:
            return found[0]
        if proc.poll() is not None:
            raise RuntimeError(f"the run to be killed ended (code {proc.returncode}) before checkpoint {step}")
        time.sleep(0.2)
    raise RuntimeError(f"no durable checkpoint at step {step} after {timeout:.0f} s")


def start_sampler(args: argparse.Namespace) -> subprocess.Popen[bytes] | None:
    if args.cpu:
        return None
    cmd = [sys.executable, "-m", "bench.train_sampler", "--pid", str(os.getpid()), "--tree", "--out",
           str(args.work / "sampler.json")]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, env=environment(args))


def main() -> None:
    args = parse()
    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)
    args.out.mkdir(parents=True, exist_ok=True)
    sampler = start_sampler(args)
    wanted = args.phases.split(",")
    results: dict[str, Any] = {"gpus": args.gpus, "cpu": args.cpu, "scale": args.scale, "per_gpu_batch": args.batch,
                               "accum": 4, "environment": gpu_environment(), "phases": []}
    try:
        if "scaling" in wanted:
            results["scaling"] = scaling(args, results["phases"])
        if "resume" in wanted:
            results["resume"] = resume(args, results["phases"])
    finally:
        if sampler is not None:
            assert sampler.stdin is not None
            sampler.stdin.close()
            sampler.wait(timeout=120)
            results["sampler"] = sampler_per_gpu(args.work / "sampler.json", results["phases"])
        name = args.name or ("cpu-multi" if args.cpu else "gpu-multi")
        (args.out / f"{name}.json").write_text(json.dumps(results, indent=2, default=str))
    text = markdown(results)
    if not args.cpu:
        with args.markdown.open("a") as handle:
            handle.write("\n" + text)
    print(text)


def gpu_environment() -> dict[str, Any]:
    """Versions and devices, read without opening a CUDA context in this (driver) process."""
    import torch

    info: dict[str, Any] = {"torch": torch.__version__, "multicast_off": NO_MULTICAST}
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=index,name,driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        info["gpus"] = [line.strip() for line in smi.stdout.splitlines() if line.strip()]
    except OSError:
        info["gpus"] = []
    if torch.cuda.is_available():
        info["nccl"] = ".".join(str(v) for v in torch.cuda.nccl.version())
    return info


if __name__ == "__main__":
    main()
