"""A preprocessing job: `qwen_train prepare SPEC`, corpus sources into a frozen pilot bundle.

It is no training run: a PrepareSpec names no lane (the job sets no lane policy
and shows lane '-'), no surface and no runner; the request may give `surface`
(default "default", checked by governance like any launch) and `runner`
(default "process"). A relaunch runs the same command: prepare resumes from its
own journal, so it takes no `--resume`.
"""

from __future__ import annotations

from pathlib import Path

from qwen_daemon.jobs.job import Job, JobContext, JobType, Paths
from qwen_daemon.jobs.launch_checks import check_runner, load_from, require_absolute, spec_file_path
from qwen_daemon.protocol import DEFAULT_SURFACE, KINDS, LaunchRequest
from qwen_daemon.protocol.errors import bad_request, unprocessable
from qwen_train.bundle.manifest import BUNDLE_JSON
from qwen_train.prepare.spec import (
    PrepareSpec,
    SourceSpec,
    decode_prepare_spec,
    encode_prepare_spec,
    load_prepare_spec,
    resolve_paths,
    validate_prepare_spec,
)
from qwen_train.spec import SpecError

NO_LANE = "-"  # preprocessing is no request lane: it sets no lane policy and shows as '-'


def _spec(job: Job) -> PrepareSpec:
    assert isinstance(job.spec, PrepareSpec), f"{job.name} is no preprocess job"
    return job.spec


def _jsonl_root(src: SourceSpec) -> Path | None:
    """Where an upstream JSONL's audio lies (its `root`, else the JSONL's directory), which a container must
    see as well as the JSONL file itself; None for the other kinds, whose path is their root."""
    if src.kind != "upstream_jsonl":
        return None
    return Path(src.root) if src.root is not None else Path(src.path).parent


def check_prepare_runnable(spec: PrepareSpec) -> PrepareSpec:
    """The model and every source must be here; `out` must be free or an already built bundle."""
    wanted = [("prepare.model", spec.model), *((f"source {s.label}", s.path) for s in spec.sources)]
    wanted += [(f"source {s.label}'s root", s.root) for s in spec.sources if s.root is not None]
    for what, value in wanted:
        if not Path(value).exists():
            raise unprocessable(f"{what} {value} does not exist on the daemon's host: fix the path in the spec")
    out = Path(spec.out)
    if out.exists() and not (out / BUNDLE_JSON).exists():
        raise unprocessable(
            f"prepare.out {out} exists and is not a built bundle: bundles are frozen, choose a new `out` "
            "or remove it"
        )
    return spec


def _inline(spec: PrepareSpec) -> PrepareSpec:
    try:
        validate_prepare_spec(spec)
    except SpecError as exc:
        raise bad_request(f"invalid prepare spec: {exc}") from None
    paths = [("prepare.out", spec.out), ("prepare.model", spec.model)]
    paths += [(f"prepare.sources[{i}].path", s.path) for i, s in enumerate(spec.sources)]
    paths += [(f"prepare.sources[{i}].root", s.root) for i, s in enumerate(spec.sources) if s.root is not None]
    if spec.work_dir is not None:
        paths.append(("prepare.work_dir", spec.work_dir))
    require_absolute(paths, "prepare spec")
    return resolve_paths(spec, Path("/"))


class PreprocessKind(JobType):
    info = KINDS["preprocess"]
    subcommand = "prepare"

    def job(self, spec: PrepareSpec, surface: str, runner: str) -> Job:
        return Job(self, spec.name, NO_LANE, surface, runner, spec)

    def decode(self, name: str, lane: str, surface: str, runner: str, spec_json: str, parent: str | None) -> Job:
        spec = decode_prepare_spec(spec_json, source=f"run {name}'s recorded spec")
        return Job(self, name, lane, surface, runner, spec)

    def encode(self, spec: object) -> bytes:
        assert isinstance(spec, PrepareSpec)
        return encode_prepare_spec(spec)

    def paths(self, job: Job) -> Paths:
        spec = _spec(job)
        out = Path(spec.out)
        # The bundle is built in a hidden sibling of `out` and renamed into place: the parent is written.
        wanted = [(Path(spec.model), True, "prepare.model"), (out.parent, False, "the parent of prepare.out")]
        wanted += [(Path(s.path), True, f"source {s.label}") for s in spec.sources]
        wanted += [(root, True, f"source {s.label}'s root") for s in spec.sources if (root := _jsonl_root(s))]
        work = Path(spec.work_dir or spec.out + ".work")
        if out.parent not in work.parents:
            wanted.append((work, False, "prepare.work_dir"))
        return wanted

    def from_request(self, request: LaunchRequest) -> Job:
        if request.spec is not None:
            raise bad_request("`spec` is a run spec: a preprocess job takes `prepare` (a PrepareSpec) or `spec_path`")
        if (request.prepare is None) == (request.spec_path is None):
            raise bad_request("a preprocess request needs exactly one of `prepare` (inline, absolute paths) "
                              "or `spec_path`")
        if request.prepare is not None:
            spec = _inline(request.prepare)
        else:
            spec = load_from(load_prepare_spec, spec_file_path(str(request.spec_path)))
        runner = request.runner or "process"
        check_runner(runner)
        return self.job(check_prepare_runnable(spec), request.surface or DEFAULT_SURFACE, runner)

    def relaunch(self, job: Job, ctx: JobContext) -> Job:
        check_prepare_runnable(_spec(job))
        return job


PREPROCESS = PreprocessKind()
