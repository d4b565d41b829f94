"""What every runner shares: the job, its kind's contract, a launch's handle and end.

A job is what the daemon launches under a name; its kind is a `JobType`
(jobs/kinds/: training run, preprocessing, diagnose replay, promotion gate, scoring),
which owns everything that differs between kinds: its spec type and the record
written to RUN_DIR/spec.json (and kept in the registry, so a relaunch reruns the
same job), the host paths beyond the run dir that a container must see, its
command line (the contract with qwen_train's CLI, built there and only there,
so the process runner and the docker runner speak the same one), the governance
it meets, what a relaunch of it is, and how its exit reads. The runners, the
monitor and the daemon ask the Job and its type, never which kind it is.
"""

from __future__ import annotations

import signal
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import msgspec

from qwen_daemon.protocol import KindInfo, LaunchRequest, RunState
from qwen_daemon.protocol.errors import bad_request
from qwen_daemon.runs.record import RunRecord
from qwen_train.prepare.spec import PrepareSpec
from qwen_train.spec import RunSpec

if TYPE_CHECKING:
    from qwen_daemon.config import DaemonConfig
    from qwen_daemon.governance.surfaces import Governance

SPEC_FILE = "spec.json"
LOG_FILE = "trainer.log"
CONTAINER_ENV = "QWEN_CONTAINER_ID"


class RunnerRefusal(Exception):
    """The runner cannot launch this job here; the message says why and what to do."""


class DiagnoseTarget(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A diagnose job's spec: the run it replays, that run's dir, the step (None: its last non-finite event)."""

    run: str
    run_dir: str
    step: int | None = None


class GateTarget(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A gate job's spec: the run it judges and that run's dir, plus the gate's optional inputs.

    `asr` (an ASR model dir), `verifier` (a speaker-verification model dir) and
    `thresholds` (a JSON file) are host paths the daemon checked; `checkpoint`
    None lets the gate take the run's newest one.
    """

    run: str
    run_dir: str
    asr: str | None = None
    thresholds: str | None = None
    checkpoint: int | None = None
    verifier: str | None = None


class ScoreTarget(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A scoring job's spec: the run it listens to and that run's dir; what to score: one durable checkpoint
    (`checkpoint`), or every kept one without scores (`all_unscored`); `base` also scores the base model (the
    reference row, once); `asr` and `verifier` the judges' model dirs (the daemon's --gate-asr and
    --gate-verifier: the gate's judges, so the gate reads scores of its own judges), None for the scorer's own;
    `device` "cpu" for a run that trains on the CPU, None for the scorer's choice (a GPU where there is one)."""

    run: str
    run_dir: str
    checkpoint: int | None = None
    all_unscored: bool = False
    base: bool = False
    asr: str | None = None
    verifier: str | None = None
    device: str | None = None


JobSpec = RunSpec | PrepareSpec | DiagnoseTarget | GateTarget | ScoreTarget
Paths = list[tuple[Path, bool, str]]  # (host path, read-only, what it is)


@dataclass(frozen=True)
class BesideLoad:
    """What a job working beside a training run loads onto the run's GPU: the run's model (`spec`), and the
    ASR judge's model dir where one is given."""

    spec: RunSpec
    asr: str | None = None


@dataclass(frozen=True)
class Job:
    """One launchable job. `lane`/`surface`/`runner` are what the registry shows and governance checks."""

    type: JobType
    name: str
    lane: str
    surface: str
    runner: str
    spec: JobSpec
    parent: str | None = None

    @property
    def kind(self) -> str:
        return self.type.info.kind

    def spec_bytes(self) -> bytes:
        return self.type.encode(self.spec)

    def paths(self) -> Paths:
        """What a container needs besides the run dir; every one under a bind root."""
        return self.type.paths(self)


class JobContext(Protocol):
    """What a kind may ask of the daemon to build a job that works on another run."""

    config: DaemonConfig

    def record(self, name: str) -> RunRecord: ...
    def active_children(self, run: str) -> list[RunRecord]: ...
    def write_evidence(self, record: RunRecord) -> None: ...


class JobType(ABC):
    """One kind of job. Subclasses set `info` and `subcommand` and say what differs."""

    info: KindInfo
    subcommand: str

    @abstractmethod
    def decode(self, name: str, lane: str, surface: str, runner: str, spec_json: str, parent: str | None) -> Job:
        """A registry row back into the Job it launched; SpecError if the stored spec no longer decodes."""

    @abstractmethod
    def paths(self, job: Job) -> Paths: ...

    def encode(self, spec: JobSpec) -> bytes:
        return msgspec.json.encode(spec)

    def argv(self, python: str, run_dir: Path, job: Job, nonce: str, resume: bool) -> list[str]:
        """By default `qwen_train SUBCOMMAND RUN_DIR/spec.json --run-dir ... --nonce ...`."""
        return [python, "-m", "qwen_train", self.subcommand, str(run_dir / SPEC_FILE), "--run-dir", str(run_dir),
                "--run-id", job.name, "--nonce", nonce]

    def works_in(self, job: Job, run_dir: Path) -> Path:
        """The run dir whose lock (qwen_train.run_lock) the job takes: by default its own."""
        return run_dir

    def beside(self, job: Job) -> BesideLoad | None:
        """For a job that loads a training run's model onto its GPU while that run may train (scoring), what it
        loads, which GPU admission plans it by; None for every other job."""
        return None

    def from_request(self, request: LaunchRequest) -> Job:
        """The validated job a LaunchRequest of this kind asks for, or a RequestError saying why not."""
        raise bad_request(f"a {self.info.kind} job is not started with POST /runs")

    def relaunch(self, job: Job, ctx: JobContext) -> Job:
        """What a resume of the ended `job` launches, checked again as a new launch would be."""
        return job

    def govern(self, job: Job, governance: Governance) -> None:
        """Every job meets its surface's class; GovernanceRefusal names the rule."""
        governance.check_surface(job.surface)

    def outcome(self, record: RunRecord, code: int | None, state: RunState, message: str) -> tuple[RunState, str]:
        """How a launch of this kind ended, in its own words; `state`/`message` are the generic reading."""
        return state, message


def job_argv(python: str, run_dir: Path, job: Job, nonce: str, resume: bool) -> list[str]:
    """The contract with qwen_train's CLI, as an argument list; the nonce also goes in the environment."""
    return job.type.argv(python, run_dir, job, nonce, resume)


class Exit(msgspec.Struct, frozen=True):
    """How a launch ended. `code` None: the exit code is lost (not our child, or vanished).

    `detail` is the runner's own explanation (e.g. "container was removed", "out of memory").
    """

    code: int | None
    detail: str | None = None
    oom: bool = False


class Launched(msgspec.Struct, frozen=True):
    """A started launch: the host pid of its main process and, for docker, its container."""

    pid: int
    container: str | None = None


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
    """One way of running jobs. Every method is keyed by the launch nonce and thread-safe."""

    name: str

    def check(self, job: Job, run_dir: Path) -> None:
        """Raise RunnerRefusal if this job cannot be launched here (before anything is reserved)."""

    def launch(self, job: Job, run_dir: Path, nonce: str, resume: bool) -> Launched:
        """Write the job's spec into run_dir and start it. Raises OSError or RunnerRefusal."""

    def adopt(self, nonce: str, pid: int | None, container: str | None) -> Launched | None:
        """Watch a launch a previous daemon started; None if it is gone."""

    def poll(self, nonce: str) -> Exit | None:
        """None while the launch runs; its Exit once it has ended (and is cleaned up)."""

    def terminate(self, nonce: str) -> bool:
        """Ask the job to stop gracefully (SIGTERM); False if it is not running."""

    def kill(self, nonce: str) -> bool:
        """The escalation: SIGKILL everything of the launch."""

    def pids(self, nonce: str) -> list[int]:
        """Host pids of the launch's processes, for per-run resource sampling."""
