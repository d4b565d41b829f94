"""One process per GPU, supervised so the run's exit code still means what it says.

`accelerate launch` (torchrun underneath) turns every worker exit that is not
0 into its own exit 1: a run stopped gracefully (5), a rejected cursor (3) or
a non-finite failure (4) would all reach the daemon as "failed". A run whose
spec asks for `train.processes > 1` is therefore started by this supervisor:
it hosts the rendezvous store (on a port it holds from the start, so nothing
can take it while the ranks import torch), starts the ranks with the
environment torch.distributed reads (accelerate picks it up and sets up DDP
exactly as under its own launcher), forwards SIGTERM/SIGINT to every rank
(the loop then agrees on the stop in the step's reduce, so all ranks stop
after the same step), and exits with the run's code:

* every rank reached the same conclusion (completed, stopped, cursor
  rejected, non-finite, usage): that code. Ranks reach these together, so
  one that ends first only waits for the others (they may still be writing
  a final checkpoint or a diagnosis);
* a rank crashed (exit 1 or a signal nobody sent): the others cannot go on
  (their next collective would wait forever), so they are asked to stop, then
  killed after a grace period that is extended while a checkpoint is still
  being written; the exit is the crashing rank's code (1 for a signal) and
  stderr names the rank and why;
* the supervisor was asked to stop before the ranks could handle it (they
  were still importing): it ends by the same signal, as a single trainer
  would, and the daemon records a stop without a final checkpoint.

The supervisor is the pid the daemon launched and the ranks are its children
(each dies with it: PR_SET_PDEATHSIG), so the daemon's process-tree sampling,
stale-status guard and group kill cover them without knowing there are several.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from qwen_train import exitcodes
from qwen_train.checkpoint_files import CKPT_DIR

RANK_ENV = "RANK"
SUPERVISOR_ENV = "QWEN_RANK_SUPERVISOR"
# Outcomes every rank reaches on its own at the same point: the others are finishing the same way.
CONCLUSIVE = (exitcodes.COMPLETED, exitcodes.USAGE, exitcodes.CURSOR_REJECTED, exitcodes.FAILED_NON_FINITE,
              exitcodes.STOPPED)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
POLL_S = 0.2
FAILURE_GRACE_S = 20.0  # after a crash: the others only need to notice and exit
STRAGGLER_GRACE_S = 900.0  # after a conclusive end: the others may be writing a checkpoint or a diagnosis
WRITING_WINDOW_S = 30.0  # a temp checkpoint file touched this recently is still being written
PR_SET_PDEATHSIG = 1


def in_rank() -> bool:
    """True inside a distributed worker (started by this supervisor, accelerate or torchrun)."""
    return RANK_ENV in os.environ or "LOCAL_RANK" in os.environ


def rank_env(rank: int, world: int, port: int) -> dict[str, str]:
    return {**os.environ, RANK_ENV: str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
            "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
            "TORCHELASTIC_USE_AGENT_STORE": "True",  # every rank is a client of the supervisor's store
            SUPERVISOR_ENV: str(os.getpid())}


def die_with_supervisor() -> None:
    """In a rank, first thing: a supervisor killed outright (OOM, SIGKILL) takes its ranks with it.

    Set by the rank itself rather than in a pre-exec hook (the supervisor has threads: its store).
    A supervisor already gone by then (the parent is no longer it) means this rank must not train.
    """
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if not supervisor:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != int(supervisor):
        print("qwen-train: the rank supervisor is gone; this rank does not start", file=sys.stderr, flush=True)
        raise SystemExit(exitcodes.FAILED)


def describe(rank: int, code: int) -> str:
    if code < 0:
        try:
            return f"rank {rank} was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"rank {rank} was killed by signal {-code}"
    return f"rank {rank} exited with code {code} ({exitcodes.state_for_exit(code)})"


def writing_checkpoint(run_dir: Path, now: float) -> bool:
    """A temp checkpoint dir with a file written in the last moments: a save is under way."""
    root = run_dir / CKPT_DIR
    with contextlib.suppress(OSError):
        for tmp in root.glob(".tmp-*"):
            for item in tmp.iterdir():
                if now - item.stat().st_mtime < WRITING_WINDOW_S:
                    return True
    return False


class Supervisor:
    def __init__(self, argv: list[str], world: int, run_dir: Path) -> None:
        self.argv = argv
        self.world = world
        self.run_dir = run_dir
        self.children: list[subprocess.Popen[bytes]] = []
        self.failure: tuple[int, int] | None = None  # (rank, code) of the first rank that crashed
        self.stop_signal: signal.Signals | None = None  # the stop this supervisor was asked for, if any

    def install(self) -> None:
        """Before any rank exists: a stop that comes while they start is remembered and forwarded."""
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_stop)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_signal = self.stop_signal or signal.Signals(signum)
        self.signal_all(signal.Signals(signum))

    def start(self) -> None:
        from torch.distributed import TCPStore

        self.store = TCPStore("127.0.0.1", 0, self.world, True, wait_for_workers=False)
        for rank in range(self.world):
            if self.stop_signal is not None:
                break  # asked to stop while starting: start no more
            self.children.append(subprocess.Popen(self.argv, env=rank_env(rank, self.world, self.store.port)))

    def signal_all(self, sig: signal.Signals) -> None:
        for child in self.children:
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(sig)

    def _crashed(self, code: int) -> bool:
        if code in CONCLUSIVE:
            return False
        sent = self.stop_signal is not None and code in (-signal.SIGTERM, -signal.SIGINT)
        return not sent  # killed by the stop we forwarded (before its handler existed) is a stop, not a crash

    def wait(self) -> int:
        """Until every rank has ended; stragglers are stopped, then killed, once waiting is pointless."""
        deadline: float | None = None
        while True:
            codes = [child.poll() for child in self.children]
            ended = [(rank, code) for rank, code in enumerate(codes) if code is not None]
            if len(ended) == len(self.children):
                break
            now = time.monotonic()
            for rank, code in ended:
                if self._crashed(code) and self.failure is None:
                    self.failure = (rank, code)
                    print(f"qwen-train: {describe(rank, code)}; stopping the other ranks", file=sys.stderr,
                          flush=True)
                    self.signal_all(signal.SIGTERM)
                    deadline = now + FAILURE_GRACE_S
            if ended and deadline is None:
                # Ranks killed by the forwarded stop before they could handle it: the rest wait in vain.
                early_stop = self.stop_signal is not None and all(code < 0 for _, code in ended)
                deadline = now + (FAILURE_GRACE_S if early_stop else STRAGGLER_GRACE_S)
            if deadline is not None and now > deadline:
                if writing_checkpoint(self.run_dir, time.time()) and now < deadline + STRAGGLER_GRACE_S:
                    time.sleep(POLL_S)  # a checkpoint still being written is worth finishing
                    continue
                alive = [rank for rank, code in enumerate(codes) if code is None]
                print(f"qwen-train: ranks {alive} still running after the others ended; killing them",
                      file=sys.stderr, flush=True)
                self.signal_all(signal.SIGKILL)
                deadline = now + 3600.0  # now only reaping is left
            time.sleep(POLL_S)
        return self.verdict([int(child.returncode) for child in self.children])

    def verdict(self, codes: list[int]) -> int:
        """The run's exit code; never negative (the daemon reads a signal death from this process itself)."""
        if self.failure is not None:
            rank, code = self.failure
            return code if code > 0 else exitcodes.FAILED
        if codes and len(set(codes)) == 1 and codes[0] >= 0:
            return codes[0]
        if self.stop_signal is not None and not any(c >= 0 and c != exitcodes.STOPPED for c in codes):
            self.die_by(self.stop_signal)  # stopped before the ranks could checkpoint: end as a lone trainer would
        print("qwen-train: ranks ended differently: " + "; ".join(describe(r, c) for r, c in enumerate(codes)),
              file=sys.stderr, flush=True)
        return exitcodes.FAILED

    @staticmethod
    def die_by(sig: signal.Signals) -> None:
        sys.stderr.flush()
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        time.sleep(5)  # the signal is delivered before this returns; a fallback only
        raise SystemExit(exitcodes.STOPPED)


def supervise(world: int, run_dir: Path) -> int:
    """Re-run this very command once per rank (`python -m qwen_train ...`) and wait for the run's verdict."""
    argv = [sys.executable, "-m", "qwen_train", *sys.argv[1:]]
    supervisor = Supervisor(argv, world, run_dir)
    supervisor.install()
    if supervisor.stop_signal is None:
        supervisor.start()
    if not supervisor.children:  # asked to stop before any rank started
        supervisor.die_by(supervisor.stop_signal or signal.SIGTERM)
    return supervisor.wait()
