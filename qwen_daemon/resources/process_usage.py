"""Per-run resource usage: the run's own processes, not the whole host's.

A run's processes come from its runner (the process tree of a local
trainer; the container's cgroup for docker). GPU memory is what NVML
reports per host pid, summed over the run's pids, so two runs on one GPU are
told apart. CPU percent per process needs two readings, so the meter keeps
psutil.Process objects between ticks; a process seen for the first time
contributes from its second sample on. A run with no live process has no
reading at all (a gap in its own metrics), never a reading of zero.

A run's RAM is its processes' proportional set size (PSS, from the kernel's
smaps_rollup), summed: a page shared by the trainer and its forked workers
(prefetch, the compiler's pool) counts once in all, split between them. Their
RSS summed counts it once per process, which read 70 GiB for a run on a host
that never used 26; it is kept beside as `rss_bytes`, named for what it is.
A process whose PSS the kernel will not show (another user's, without the
right to read it) makes the run's PSS unknown rather than partial.
"""

from __future__ import annotations

import psutil

from qwen_daemon.protocol import RunUsage


def per_gpu_memory(holdings: list[dict[int, int]]) -> dict[int, int]:
    """Sum the run's processes' memory per GPU index (one trainer rank per GPU, or several on one)."""
    total: dict[int, int] = {}
    for held in holdings:
        for index, used in held.items():
            total[index] = total.get(index, 0) + used
    return total


def proportional_set_size(proc: psutil.Process) -> int | None:
    """The process's PSS in bytes, or None where the kernel does not show it (or the process just ended)."""
    try:
        return int(proc.memory_full_info().pss)
    except (psutil.Error, AttributeError):  # AttributeError: a platform without PSS
        return None


class UsageMeter:
    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}
        self._cpus = psutil.cpu_count() or 1

    def _process(self, pid: int) -> psutil.Process | None:
        proc = self._procs.get(pid)
        if proc is None:
            try:
                proc = psutil.Process(pid)
                proc.cpu_percent(None)  # primes the counter; the next call measures
            except psutil.Error:
                return None
            self._procs[pid] = proc
        return proc

    def measure(self, runs: dict[str, list[int]], gpu_memory: dict[int, dict[int, int]] | None
                ) -> dict[str, RunUsage]:
        """Usage per run name from its host pids; `gpu_memory` is NVML's pid -> {GPU index: bytes} (None: no NVML)."""
        usage: dict[str, RunUsage] = {}
        seen: set[int] = set()
        for name, pids in runs.items():
            cpu, rss, alive = 0.0, 0, 0
            pss: int | None = 0
            for pid in pids:
                proc = self._process(pid)
                if proc is None:
                    continue
                try:
                    cpu += proc.cpu_percent(None)
                    rss += proc.memory_info().rss
                except psutil.Error:
                    continue
                share = proportional_set_size(proc)
                pss = None if pss is None or share is None else pss + share
                alive += 1
                seen.add(pid)
            if alive == 0:
                continue  # no process seen (starting, ending): no reading, never a reading of zero
            gpu_pids = [pid for pid in pids if gpu_memory is not None and pid in gpu_memory]
            per_gpu = per_gpu_memory([gpu_memory[pid] for pid in gpu_pids]) if gpu_memory is not None else {}
            usage[name] = RunUsage(
                processes=alive,
                cpu_percent=cpu / self._cpus,
                rss_bytes=rss,
                pss_bytes=pss,
                gpu_memory_bytes=None if gpu_memory is None else sum(per_gpu.values()),
                gpu_processes=len(gpu_pids),
                gpu_memory_per_gpu={str(index): used for index, used in sorted(per_gpu.items())},
            )
        for pid in set(self._procs) - seen:
            del self._procs[pid]
        return usage
