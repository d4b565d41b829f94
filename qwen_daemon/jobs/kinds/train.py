"""A training run: `qwen_train run SPEC`, resumable from its newest durable checkpoint.

The one kind that meets lane policy as well as surface rules, and the one that
other jobs (a diagnose replay, the gate) work on. An inline spec has no file to
resolve relative paths against, so it must give absolute ones; a spec file's
relative paths resolve against the file.
"""

from __future__ import annotations

from pathlib import Path

from qwen_daemon.governance.surfaces import Governance
from qwen_daemon.jobs.job import Job, JobContext, JobType, Paths
from qwen_daemon.jobs.launch_checks import check_runner, load_from, require_absolute, spec_file_path
from qwen_daemon.protocol import KINDS, LaunchRequest
from qwen_daemon.protocol.errors import bad_request, unprocessable
from qwen_train.spec import RunSpec, SpecError, decode_spec, encode_spec, load_spec, validate_spec


def _spec(job: Job) -> RunSpec:
    assert isinstance(job.spec, RunSpec), f"{job.name} is no training run"
    return job.spec


def check_runnable(spec: RunSpec) -> RunSpec:
    """What this daemon can check before launching: paths exist here, the runner exists."""
    for field in ("model", "bundle"):
        value = getattr(spec, field)
        if not Path(value).exists():
            raise unprocessable(
                f"spec.{field} {value} does not exist on the daemon's host: "
                "build or copy it there first, or fix the path"
            )
    check_runner(spec.runner)
    return spec


def _inline(spec: RunSpec) -> RunSpec:
    try:
        validate_spec(spec)
    except SpecError as exc:
        raise bad_request(f"invalid run spec: {exc}") from None
    require_absolute([("spec.model", spec.model), ("spec.bundle", spec.bundle)], "spec")
    return spec


class TrainKind(JobType):
    info = KINDS["train"]
    subcommand = "run"

    def job(self, spec: RunSpec) -> Job:
        return Job(self, spec.name, spec.lane, spec.surface, spec.runner, spec)

    def decode(self, name: str, lane: str, surface: str, runner: str, spec_json: str, parent: str | None) -> Job:
        return self.job(decode_spec(spec_json, source=f"run {name}'s recorded spec"))

    def encode(self, spec: object) -> bytes:
        assert isinstance(spec, RunSpec)
        return encode_spec(spec)

    def paths(self, job: Job) -> Paths:
        spec = _spec(job)
        return [(Path(spec.model), True, "spec.model"), (Path(spec.bundle), True, "spec.bundle")]

    def argv(self, python: str, run_dir: Path, job: Job, nonce: str, resume: bool) -> list[str]:
        return super().argv(python, run_dir, job, nonce, resume) + (["--resume"] if resume else [])

    def from_request(self, request: LaunchRequest) -> Job:
        if request.prepare is not None:
            raise bad_request("`prepare` is a preprocess spec: send it with kind \"preprocess\"")
        if request.surface is not None or request.runner is not None:
            raise bad_request("a training run takes its surface and runner from its spec: "
                              "leave `surface`/`runner` out")
        if (request.spec is None) == (request.spec_path is None):
            raise bad_request("a launch request needs exactly one of `spec` (inline, absolute paths) or `spec_path`")
        if request.spec is not None:
            spec = _inline(request.spec)
        else:
            spec = load_from(load_spec, spec_file_path(str(request.spec_path)))
        return self.job(check_runnable(spec))

    def relaunch(self, job: Job, ctx: JobContext) -> Job:
        check_runnable(_spec(job))
        return job

    def govern(self, job: Job, governance: Governance) -> None:
        governance.check_launch(_spec(job))


TRAIN = TrainKind()
