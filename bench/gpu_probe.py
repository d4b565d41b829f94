"""What the training benchmark measures of the machine itself: the matmul ceiling, a profile, the versions.

Kept out of train_throughput.py, which is about the two training steps it
compares; these say what the numbers were measured on and against.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch


def matmul_ceiling(device: torch.device) -> float | None:
    """Measured bf16 matrix-product rate (TFLOP/s): 8192^3 on random data, median of 20 after warm-up."""
    if device.type != "cuda":
        return None
    n = 8192
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(5):
        a @ b
    times = []
    for _ in range(20):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    times.sort()
    return 2 * n**3 / times[len(times) // 2] / 1e12


@contextlib.contextmanager
def profiled(path: Path, device: torch.device) -> Iterator[None]:
    """torch.profiler over the block; the top ops by device and by host time go to `path`."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        yield
    wall = time.perf_counter() - start
    events = prof.key_averages()
    kernels = [e for e in events if e.device_type.name == "CUDA"]
    busy = sum(e.self_device_time_total for e in kernels) / 1e6
    launches = sum(e.count for e in kernels)
    head = f"wall {wall:.3f} s, device kernel time {busy:.3f} s ({busy / wall:.0%}), kernels {launches}\n"
    by_device = events.table(sort_by="self_cuda_time_total" if kernels else "self_cpu_time_total", row_limit=30)
    by_host = events.table(sort_by="self_cpu_time_total", row_limit=30)
    path.write_text(head + by_device + "\n" + by_host)
    print(f"profile {path.name}: {head}", end="", flush=True)


def environment(device: torch.device) -> dict[str, Any]:
    import accelerate
    import transformers

    info: dict[str, Any] = {"torch": torch.__version__, "transformers": transformers.__version__,
                            "accelerate": accelerate.__version__, "python": sys.version.split()[0],
                            "qwen_tts": "0.1.1", "device": str(device)}
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
        info["gpu_memory_gib"] = torch.cuda.get_device_properties(0).total_memory / 2**30
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True)
        info["driver"] = smi.stdout.strip()
    return info
