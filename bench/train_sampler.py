"""The daemon's sampler against the real NVML, in its own process, beside a training run.

Started by `train_throughput.py` with the trainer's pid. It is the daemon's
code (qwen_daemon.sampler: GpuProbe, take_sample, the Sampler thread), only
read and called here: the sampler lives outside the training process, as in
the daemon, so its NVML calls cost the step nothing. It records

* per-call cost in microseconds of each NVML query the sampler makes, and of
  one whole `take_sample` with the run's pid (median of many calls, while the
  GPU is training);
* pairs of readings, the sampler's and `nvidia-smi`'s, taken back to back;
* every sample the Sampler thread takes, tagged with the run.

It runs until its stdin closes, then writes everything as JSON to --out.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import msgspec
import pynvml

from qwen_daemon.jobs.process_runner import process_tree  # a run is its pid and descendants, as the daemon sees it
from qwen_daemon.protocol import ResourceSample
from qwen_daemon.resources.process_usage import UsageMeter
from qwen_daemon.resources.sampler import GpuProbe, Sampler, take_sample


class ListSink:
    def __init__(self) -> None:
        self.samples: list[ResourceSample] = []

    def add_sample(self, sample: ResourceSample, runs: list[str]) -> None:
        self.samples.append(sample)

    def prune_host_samples(self, before: float) -> int:
        return 0


def per_call_us(fn: Any, calls: int) -> float:
    times = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1000.0


def costs(probe: GpuProbe, pid: int, calls: int) -> dict[str, float]:
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    meter = UsageMeter()
    return {
        "utilization_us": per_call_us(lambda: pynvml.nvmlDeviceGetUtilizationRates(handle), calls),
        "memory_info_us": per_call_us(lambda: pynvml.nvmlDeviceGetMemoryInfo(handle), calls),
        "running_processes_us": per_call_us(lambda: pynvml.nvmlDeviceGetComputeRunningProcesses(handle), calls),
        "probe_read_us": per_call_us(probe.read, calls),
        "take_sample_us": per_call_us(lambda: take_sample(probe, time.time(), {"bench": [pid]}, meter), calls),
    }


def paired_all(probe: GpuProbe) -> list[dict[str, float]]:
    """The same bracket for every GPU at once: one nvidia-smi call, a sampler reading on either side."""
    before = probe.read()[0]
    query = "index,utilization.gpu,memory.used,memory.total"
    out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=30).stdout
    after = probe.read()[0]
    now, pairs = time.time(), []
    for line in out.strip().splitlines():
        index, util, used, total = (float(x) for x in line.split(","))
        b = next((g for g in before if g.index == int(index)), None)
        a = next((g for g in after if g.index == int(index)), None)
        if a is None or b is None or a.unread or b.unread:
            continue  # a reading the sampler could not take has nothing to be compared with
        assert a.busy_percent is not None and b.busy_percent is not None and b.vram_total_bytes is not None
        assert a.vram_used_bytes is not None and b.vram_used_bytes is not None
        pairs.append({"time": now, "gpu": int(index), "smi_busy": util, "smi_used_mib": used, "smi_total_mib": total,
                      "busy_before": b.busy_percent, "busy_after": a.busy_percent,
                      "used_mib_before": b.vram_used_bytes / 2**20, "used_mib_after": a.vram_used_bytes / 2**20,
                      "total_mib": b.vram_total_bytes / 2**20})
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--period", type=float, default=0.5)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pair-every", type=float, default=8.0)
    parser.add_argument("--tree", action="store_true", help="the run is the pid and all its descendants")
    parser.add_argument("--cost-after", type=float, default=45.0, help="measure call costs this late (training)")
    args = parser.parse_args()
    sink = ListSink()
    pids = (lambda _run: process_tree(args.pid)) if args.tree else (lambda _run: [args.pid])
    sampler = Sampler(args.period, sink, lambda: ["bench"], run_pids=pids)
    sampler.start()
    probe = GpuProbe()
    closed = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), closed.set()), daemon=True).start()
    started, pairs, cost = time.time(), [], {}
    while not closed.wait(args.pair_every):
        if probe.note is None:
            pairs.extend(paired_all(probe))
            if not cost and time.time() - started > args.cost_after:
                cost = costs(probe, args.pid, 300)
    if not cost and probe.note is None:
        cost = costs(probe, args.pid, 300)
    sampler.stop()
    result = {"period_s": args.period, "note": probe.note, "costs_us": cost, "pairs": pairs,
              "samples": sink.samples}
    args.out.write_bytes(msgspec.json.encode(result))
    probe.close()


if __name__ == "__main__":
    main()
