"""From a status.json write to a client seeing it through the API: file watching vs polling.

A real `qwen-daemon serve` launches the stand-in trainer of the tests, which
rewrites status.json every 0.2 s with a new step and the write time as its
heartbeat. Client A polls GET /runs/NAME every second (what a dashboard that
polls does); client B waits for the run dir to change (watchfiles, inotify)
and then asks the API once. For each step a client sees, the latency is
seen-time minus heartbeat. Printed: median and p95 of each, and the ratio
polling / watching. Usage:

    .venv/bin/python bench/daemon_status_latency.py [--seconds S]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import watchfiles

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qwen_daemon.protocol.client import DaemonClient  # noqa: E402
from qwen_daemon.resources.summary import percentile  # noqa: E402
from tests.test_daemon_harness import DaemonProcess, make_spec, remove_tree, short_tmp_dir, trainer_wrapper  # noqa: E402


def seen(client: DaemonClient, name: str, last: int, out: list[float]) -> int:
    status = client.run(name).status
    if status is not None and status.step != last:
        out.append(time.time() - status.heartbeat)
        return status.step
    return last


def polling(client: DaemonClient, name: str, stop: threading.Event, out: list[float]) -> None:
    last = -1
    while not stop.wait(1.0):
        last = seen(client, name, last, out)


def watching(client: DaemonClient, name: str, run_dir: Path, stop: threading.Event, out: list[float]) -> None:
    last = -1
    for _changes in watchfiles.watch(run_dir, stop_event=stop, debounce=0, step=5, rust_timeout=500):
        last = seen(client, name, last, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    root = short_tmp_dir()
    daemon = DaemonProcess(root / "state", root / "d.sock", trainer_wrapper(root), "--journal-socket", "").start()
    try:
        view = daemon.client.launch(spec=make_spec(root, "bench"))
        run_dir = Path(view.run_dir)
        while not (run_dir / "status.json").exists():
            time.sleep(0.05)
        stop = threading.Event()
        polled: list[float] = []
        watched: list[float] = []
        threads = [threading.Thread(target=polling, args=(daemon.client, "bench", stop, polled)),
                   threading.Thread(target=watching, args=(daemon.client, "bench", run_dir, stop, watched))]
        for thread in threads:
            thread.start()
        time.sleep(args.seconds)
        stop.set()
        for thread in threads:
            thread.join()
        daemon.client.stop("bench")
    finally:
        daemon.stop()
        remove_tree(root)
    for label, values in (("polling (1 s)", polled), ("watchfiles", watched)):
        print(f"{label}: {len(values)} updates seen, median {statistics.median(values) * 1e3:.1f} ms, "
              f"p95 {percentile(values, 95) * 1e3:.1f} ms")
    print(f"ratio polling / watching (median): {statistics.median(polled) / statistics.median(watched):.1f}x")


if __name__ == "__main__":
    main()
