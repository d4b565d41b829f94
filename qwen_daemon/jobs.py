"""What every runner shares: the trainer's command line, a launch's handle and end.

The command line is built here and only here, so the process runner, the
docker runner and a later job kind (`preprocess` -> `qwen_train prepare`) all
speak the same contract with qwen_train's CLI. A runner is anything with the
`Runner` methods; the monitor and the daemon never ask which kind it is.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Literal, Protocol

import msgspec

from qwen_train.spec import RunSpec

SPEC_FILE = "spec.json"
LOG_FILE = "trainer.log"
NONCE_ENV = "QWEN_RUN_NONCE"
CONTAINER_ENV = "QWEN_CONTAINER_ID"

JobKind = Literal["train"]
# qwen_train subcommand per job kind; `preprocess: "prepare"` joins it later.
_SUBCOMMANDS: dict[str, str] = {"train": "run"}


class RunnerRefusal(Exception):
    """The runner cannot launch this spec here; the message says why and what to do."""


class Exit(msgspec.Struct, frozen=True):
    """How a launch ended. `code` None: the exit code is lost (not our child, or vanished).

    `signal_sent_by_us` is filled by the monitor; `detail` is the runner's own
    explanation (e.g. "container was removed", "out of memory").
    """

    code: int | None
    detail: str | None = None
    oom: bool = False


class Launched(msgspec.Struct, frozen=True):
    """A started launch: the host pid of its main process and, for docker, its container."""

    pid: int
    container: str | None = None


def job_argv(python: str, run_dir: Path, name: str, nonce: str, resume: bool, kind: JobKind = "train") -> list[str]:
    """The contract with qwen_train's CLI, as an argument list; the nonce also goes in the environment."""
    argv = [
        python, "-m", "qwen_train", _SUBCOMMANDS[kind], str(run_dir / SPEC_FILE),
        "--run-dir", str(run_dir), "--run-id", name, "--nonce", nonce,
    ]
    if resume:
        argv.append("--resume")
    return argv


def describe_exit(code: int | None) -> str:
    if code is None:
        return "exit code unknown"
    if code < 0:
        try:
            return f"trainer killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"trainer killed by signal {-code}"
    return f"trainer exited with code {code}"


class Runner(Protocol):
    """One way of running trainers. Every method is keyed by the launch nonce and thread-safe."""

    name: str

    def check(self, spec: RunSpec, run_dir: Path) -> None:
        """Raise RunnerRefusal if this spec cannot be launched here (before anything is reserved)."""

    def launch(self, spec: RunSpec, run_dir: Path, nonce: str, resume: bool) -> Launched:
        """Write the spec into run_dir and start the trainer. Raises OSError or RunnerRefusal."""

    def adopt(self, nonce: str, pid: int | None, container: str | None) -> Launched | None:
        """Watch a launch a previous daemon started; None if it is gone."""

    def poll(self, nonce: str) -> Exit | None:
        """None while the launch runs; its Exit once it has ended (and is cleaned up)."""

    def terminate(self, nonce: str) -> bool:
        """Ask the trainer to stop gracefully (SIGTERM); False if it is not running."""

    def kill(self, nonce: str) -> bool:
        """The escalation: SIGKILL everything of the launch."""

    def pids(self, nonce: str) -> list[int]:
        """Host pids of the launch's processes, for per-run resource sampling."""
