"""What every runner shares: the job, its command line, a launch's handle and end.

A job is what the daemon launches under a name: a training run (`train`,
`qwen_train run`), a preprocessing job (`preprocess`, `qwen_train prepare`),
a replay of a run's non-finite step (`diagnose`, `qwen_train diagnose`) or
the promotion gate on an ended run (`gate`, `qwen_train gate`).
The command line is built here and only here, so the process runner and the
docker runner speak the same contract with qwen_train's CLI. A runner is
anything with the `Runner` methods; the monitor and the daemon never ask
which kind it is.

Job kinds differ in what they are given and what they touch, and the rest
of the daemon asks the Job, not the kind: `spec_bytes` is the record written
to RUN_DIR/spec.json (and kept in the registry, so a relaunch reruns the same
job), `paths` are the host paths beyond the run dir that a container must see.
A `preprocess` job relaunched runs the same `prepare` command: prepare resumes
from its own journal, so there is no `--resume` flag for it. A `diagnose` job
writes no status.json (the replay must not touch its run's heartbeat) and
carries its nonce only in the environment (`qwen_train diagnose` takes none).
A `gate` job is the same kind of child of a run: named RUN.gate, no
status.json, nonce in the environment only; it writes RUN_DIR/gate/ (the
verdict) and exits qwen_train.exitcodes.GATE_FAILED when it ran and the
verdict says no, which is a completed job, not a failed one.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import msgspec

from qwen_daemon.protocol import JobKind
from qwen_train.prepare.spec import PrepareSpec, decode_prepare_spec, encode_prepare_spec
from qwen_train.spec import RunSpec, SpecError, decode_spec, encode_spec

SPEC_FILE = "spec.json"
LOG_FILE = "trainer.log"
NONCE_ENV = "QWEN_RUN_NONCE"
CONTAINER_ENV = "QWEN_CONTAINER_ID"
NO_LANE = "-"  # preprocessing is no request lane: it sets no lane policy and shows as '-'

_SUBCOMMANDS: dict[str, str] = {"train": "run", "preprocess": "prepare", "diagnose": "diagnose", "gate": "gate"}


class RunnerRefusal(Exception):
    """The runner cannot launch this job here; the message says why and what to do."""


class DiagnoseTarget(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A diagnose job's spec: the run it replays, that run's dir, the step (None: its last non-finite event)."""

    run: str
    run_dir: str
    step: int | None = None


class GateTarget(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A gate job's spec: the run it judges and that run's dir, plus the gate's optional inputs.

    `asr` (an ASR model dir) and `thresholds` (a JSON file) are host paths the
    daemon checked; `checkpoint` None lets the gate take the run's newest one.
    """

    run: str
    run_dir: str
    asr: str | None = None
    thresholds: str | None = None
    checkpoint: int | None = None


JobSpec = RunSpec | PrepareSpec | DiagnoseTarget | GateTarget


@dataclass(frozen=True)
class Job:
    """One launchable job. `lane`/`surface`/`runner` are what the registry shows and governance checks."""

    kind: JobKind
    name: str
    lane: str
    surface: str
    runner: str
    spec: JobSpec
    parent: str | None = None

    def spec_bytes(self) -> bytes:
        if isinstance(self.spec, RunSpec):
            return encode_spec(self.spec)
        if isinstance(self.spec, PrepareSpec):
            return encode_prepare_spec(self.spec)
        return msgspec.json.encode(self.spec)

    def paths(self) -> list[tuple[Path, bool, str]]:
        """(host path, read-only, what) a container needs besides the run dir; every one under a bind root."""
        spec = self.spec
        if isinstance(spec, RunSpec):
            return [(Path(spec.model), True, "spec.model"), (Path(spec.bundle), True, "spec.bundle")]
        if isinstance(spec, PrepareSpec):
            out = Path(spec.out)
            # The bundle is built in a hidden sibling of `out` and renamed into place: the parent is written.
            wanted = [(Path(spec.model), True, "prepare.model"), (out.parent, False, "the parent of prepare.out")]
            wanted += [(Path(s.path), True, f"source {s.label}") for s in spec.sources]
            work = Path(spec.work_dir or spec.out + ".work")
            if out.parent not in work.parents:
                wanted.append((work, False, "prepare.work_dir"))
            return wanted
        return _child_paths(spec)


def _child_paths(spec: DiagnoseTarget | GateTarget) -> list[tuple[Path, bool, str]]:
    """A replay or a gate reads its run's model (the gate's base) and bundle and writes into its run dir."""
    what = "the replay" if isinstance(spec, DiagnoseTarget) else "the gate"
    try:
        parent = parent_spec(spec)
    except SpecError as exc:
        raise RunnerRefusal(f"cannot tell what {what} reads: {exc}") from None
    wanted = [(Path(spec.run_dir), False, f"run {spec.run}'s dir"), (Path(parent.model), True, "spec.model"),
              (Path(parent.bundle), True, "spec.bundle")]
    if isinstance(spec, GateTarget):
        inputs = (("gate.asr", spec.asr), ("gate.thresholds", spec.thresholds))
        wanted += [(Path(path), True, field) for field, path in inputs if path is not None]
    return wanted


def parent_spec(target: DiagnoseTarget | GateTarget) -> RunSpec:
    """The replayed (or gated) run's spec, from its run dir (the spec its trainer was launched with)."""
    path = Path(target.run_dir) / SPEC_FILE
    try:
        return decode_spec(path.read_bytes(), source=str(path))
    except OSError as exc:
        raise SpecError(f"{path}: cannot read run {target.run}'s spec ({exc.strerror})") from None


def train_job(spec: RunSpec) -> Job:
    return Job("train", spec.name, spec.lane, spec.surface, spec.runner, spec)


def prepare_job(spec: PrepareSpec, surface: str, runner: str) -> Job:
    return Job("preprocess", spec.name, NO_LANE, surface, runner, spec)


def decode_job(kind: str, name: str, lane: str, surface: str, runner: str, spec_json: str,
               parent: str | None) -> Job:
    """A registry row back into the Job it launched; SpecError if the stored spec no longer decodes."""
    source = f"run {name}'s recorded spec"
    if kind == "train":
        return train_job(decode_spec(spec_json, source=source))
    if kind == "preprocess":
        return Job("preprocess", name, lane, surface, runner, decode_prepare_spec(spec_json, source=source))
    if kind == "diagnose":
        try:
            target = msgspec.json.decode(spec_json, type=DiagnoseTarget)
        except msgspec.MsgspecError as exc:
            raise SpecError(f"{source}: invalid diagnose target: {exc}") from None
        return Job("diagnose", name, lane, surface, runner, target, parent)
    if kind == "gate":
        return Job("gate", name, lane, surface, runner, decode_gate_target(spec_json, source), parent)
    raise SpecError(f"{source}: unknown job kind {kind!r}")


class _ChildOf(msgspec.Struct, frozen=True):
    run: str
    run_dir: str


def child_target(spec_json: str | bytes, name: str) -> tuple[str, Path]:
    """(run, run dir) that a diagnose or gate job works on, from its recorded spec; SpecError if malformed."""
    try:
        target = msgspec.json.decode(spec_json, type=_ChildOf)
    except msgspec.MsgspecError as exc:
        raise SpecError(f"run {name}'s recorded target is malformed: {exc}") from None
    return target.run, Path(target.run_dir)


def decode_gate_target(spec_json: str | bytes, source: str) -> GateTarget:
    try:
        return msgspec.json.decode(spec_json, type=GateTarget)
    except msgspec.MsgspecError as exc:
        raise SpecError(f"{source}: invalid gate target: {exc}") from None


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


def job_argv(python: str, run_dir: Path, job: Job, nonce: str, resume: bool) -> list[str]:
    """The contract with qwen_train's CLI, as an argument list; the nonce also goes in the environment."""
    command = [python, "-m", "qwen_train", _SUBCOMMANDS[job.kind]]
    if isinstance(job.spec, DiagnoseTarget):
        step = [] if job.spec.step is None else ["--step", str(job.spec.step)]
        return [*command, job.spec.run_dir, *step]
    if isinstance(job.spec, GateTarget):
        return [*command, job.spec.run_dir, *_gate_options(job.spec)]
    argv = [*command, str(run_dir / SPEC_FILE), "--run-dir", str(run_dir), "--run-id", job.name, "--nonce", nonce]
    if resume and job.kind == "train":
        argv.append("--resume")
    return argv


def _gate_options(target: GateTarget) -> list[str]:
    options = [] if target.checkpoint is None else ["--checkpoint", str(target.checkpoint)]
    options += [] if target.asr is None else ["--asr", target.asr]
    return options + ([] if target.thresholds is None else ["--thresholds", target.thresholds])


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
