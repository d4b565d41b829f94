"""What the resource sampler costs per hour of a run, at a 1 s and a 5 s period.

One sampler tick does what the daemon does: host CPU/RAM, NVML (or its
absence), the run's own processes (here: this process and a busy child),
one SQLite row and one journald datagram (to a local datagram socket that
stands in for journald). The CPU time of N ticks, measured in this process,
gives the cost per tick; per hour that is 3600/period ticks. Printed as CPU
seconds per hour, as a share of one core, and the 1 s / 5 s ratio. Usage:

    .venv/bin/python bench/daemon_sampler_cost.py [--ticks N]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from qwen_daemon.resources.sampler import Sampler
from qwen_daemon.runs.registry import Registry
from qwen_daemon.systemd.journal import JournalWriter


def cost_per_tick(ticks: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        sink_path = str(Path(tmp) / "journal.sock")
        sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sink.bind(sink_path)
        sink.setblocking(False)
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        registry = Registry(Path(tmp) / "r.sqlite3")
        journal = JournalWriter(sink_path)
        pids = [os.getpid(), busy.pid]
        sampler = Sampler(1.0, registry, lambda: ["bench"], run_pids=lambda _: pids, journal=journal)
        try:
            sampler.sample_once()  # warm: NVML init, prepared statements, psutil caches
            start = time.process_time()
            for _ in range(ticks):
                sampler.sample_once()
                try:
                    while True:
                        sink.recv(1 << 16)
                except BlockingIOError:
                    pass
            spent = time.process_time() - start
        finally:
            busy.kill()
            busy.wait()
            sampler.stop()
            journal.close()
            registry.close()
            sink.close()
    return spent / ticks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=300)
    args = parser.parse_args()
    per_tick = cost_per_tick(args.ticks)
    per_hour = {period: per_tick * 3600.0 / period for period in (1.0, 5.0)}
    print(f"sampler tick: {per_tick * 1e3:.2f} ms CPU ({args.ticks} ticks)")
    for period, seconds in per_hour.items():
        print(f"period {period:g} s: {seconds:.1f} CPU s per hour = {100 * seconds / 3600:.3f}% of one core")
    print(f"ratio 1 s / 5 s: {per_hour[1.0] / per_hour[5.0]:.2f}x (5.00x if a tick costs the same at both)")


if __name__ == "__main__":
    main()
