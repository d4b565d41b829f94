"""One process per GPU, supervised so the run's exit code still means what it says.

`accelerate launch` (torchrun underneath) turns every worker exit that is not
0 into its own exit 1: a run stopped gracefully (5), a rejected cursor (3) or
a non-finite failure (4) would all reach the daemon as "failed". A run whose
spec asks for `train.processes > 1` is therefore started by this supervisor:
it starts the ranks with the environment torch.distributed reads (RANK,
WORLD_SIZE, MASTER_ADDR...; accelerate picks it up and sets up DDP exactly as
under its own launcher), forwards SIGTERM/SIGINT to every rank (the loop then
agrees on the stop in the step's reduce, so all ranks stop after the same
step), and exits with the run's code:

* every rank ended with the same code: that code;
* a rank failed (a code other than completed/stopped, or a signal): the
  others cannot go on (their next collective would wait forever), so they are
  asked to stop, then killed after a grace period; the exit is the failing
  rank's code (1 for a signal), and stderr says which rank and why.

The supervisor is the pid the daemon launched; the ranks are its children, so
the daemon's process-tree sampling, stale-status guard and group kill cover
them without knowing there are several.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from types import FrameType

from qwen_train import exitcodes

RANK_ENV = "RANK"
CLEAN = (exitcodes.COMPLETED, exitcodes.STOPPED)
POLL_S = 0.2
FAILURE_GRACE_S = 20.0  # after a rank failed: the others only need to notice and exit
STRAGGLER_GRACE_S = 600.0  # after a rank ended cleanly: the others may still be writing a final checkpoint


def in_rank() -> bool:
    """True inside a distributed worker (started by this supervisor, accelerate or torchrun)."""
    return RANK_ENV in os.environ or "LOCAL_RANK" in os.environ


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rank_env(rank: int, world: int, port: int) -> dict[str, str]:
    return {**os.environ, RANK_ENV: str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
            "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


def describe(rank: int, code: int) -> str:
    if code < 0:
        try:
            return f"rank {rank} was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"rank {rank} was killed by signal {-code}"
    return f"rank {rank} exited with code {code} ({exitcodes.state_for_exit(code)})"


class Supervisor:
    def __init__(self, argv: list[str], world: int) -> None:
        self.argv = argv
        self.world = world
        self.children: list[subprocess.Popen[bytes]] = []
        self.failure: tuple[int, int] | None = None  # (rank, code) of the first rank that failed

    def start(self) -> None:
        port = free_port()
        self.children = [subprocess.Popen(self.argv, env=rank_env(rank, self.world, port))
                         for rank in range(self.world)]
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._forward)

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        self.signal_all(signal.Signals(signum))

    def signal_all(self, sig: signal.Signals) -> None:
        for child in self.children:
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(sig)

    def wait(self) -> int:
        """Until every rank has ended; stragglers are stopped, then killed, once waiting is pointless."""
        deadline: float | None = None
        while True:
            codes = [child.poll() for child in self.children]
            ended = [(rank, code) for rank, code in enumerate(codes) if code is not None]
            if len(ended) == self.world:
                break
            for rank, code in ended:
                if code not in CLEAN and self.failure is None:
                    self.failure = (rank, code)
                    print(f"qwen-train: {describe(rank, code)}; stopping the other ranks", file=sys.stderr,
                          flush=True)
                    self.signal_all(signal.SIGTERM)
                    deadline = time.monotonic() + FAILURE_GRACE_S
            if ended and deadline is None:
                deadline = time.monotonic() + STRAGGLER_GRACE_S
            if deadline is not None and time.monotonic() > deadline:
                alive = [rank for rank, code in enumerate(codes) if code is None]
                print(f"qwen-train: ranks {alive} still running after the others ended; killing them",
                      file=sys.stderr, flush=True)
                self.signal_all(signal.SIGKILL)
                deadline = time.monotonic() + 3600.0  # now only reaping is left
            time.sleep(POLL_S)
        return self.verdict([int(child.returncode) for child in self.children])

    def verdict(self, codes: list[int]) -> int:
        if self.failure is not None:
            rank, code = self.failure
            return code if code > 0 else exitcodes.FAILED
        if len(set(codes)) == 1:
            return codes[0]
        # Clean but different (one rank completed, another stopped, or one was killed as a straggler).
        print("qwen-train: ranks ended differently: " + "; ".join(describe(r, c) for r, c in enumerate(codes)),
              file=sys.stderr, flush=True)
        return exitcodes.FAILED


def supervise(world: int) -> int:
    """Re-run this very command once per rank (`python -m qwen_train ...`) and wait for the run's verdict."""
    argv = [sys.executable, "-m", "qwen_train", *sys.argv[1:]]
    supervisor = Supervisor(argv, world)
    supervisor.start()
    return supervisor.wait()
