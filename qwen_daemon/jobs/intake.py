"""Turning a LaunchRequest into a job the daemon is willing to launch.

Everything here is a refusal with a reason, before anything touches the
registry or the disk. 400: the request itself is wrong (both or neither of
spec/spec_path, a spec of the wrong kind, relative paths in an inline spec,
an invalid spec). 422: the request is well-formed but what it points at
cannot be run (a spec file that does not load, a model, bundle or source
that is not on this host, a runner this daemon does not have).

A preprocess job is no training run: a PrepareSpec names no lane (the job
sets no lane policy and shows lane '-'), no surface and no runner; the
request may give `surface` (default "default", checked by governance like
any launch) and `runner` (default "process").
"""

from __future__ import annotations

from pathlib import Path

from qwen_daemon.jobs.job import Job, prepare_job, train_job
from qwen_daemon.protocol import LaunchRequest
from qwen_daemon.protocol.errors import bad_request, unprocessable
from qwen_train.bundle.manifest import BUNDLE_JSON
from qwen_train.prepare.spec import PrepareSpec, load_prepare_spec, resolve_paths, validate_prepare_spec
from qwen_train.spec import RunSpec, SpecError, load_spec, validate_spec

SUPPORTED_RUNNERS = frozenset({"process", "docker"})
DEFAULT_SURFACE = "default"


def _inline(spec: RunSpec) -> RunSpec:
    """An inline spec has no file to resolve relative paths against: demand absolute ones."""
    try:
        validate_spec(spec)
    except SpecError as exc:
        raise bad_request(f"invalid run spec: {exc}") from None
    for field in ("model", "bundle"):
        value = getattr(spec, field)
        if not Path(value).is_absolute():
            raise bad_request(
                f"spec.{field} {value!r} is a relative path: an inline spec needs absolute paths "
                "(or send spec_path, whose relative paths resolve against the spec file)"
            )
    return spec


def _spec_file(spec_path: str) -> Path:
    if not Path(spec_path).is_absolute():
        raise bad_request(
            f"spec_path {spec_path!r} is relative: give the absolute path of the spec file "
            "on the daemon's host"
        )
    return Path(spec_path)


def _from_file(spec_path: str) -> RunSpec:
    try:
        return load_spec(_spec_file(spec_path))
    except SpecError as exc:
        raise unprocessable(str(exc)) from None


def _check_runner(runner: str) -> None:
    if runner not in SUPPORTED_RUNNERS:
        raise unprocessable(
            f"runner {runner!r} is not available in this daemon yet: "
            f"set runner to one of {sorted(SUPPORTED_RUNNERS)}"
        )


def check_runnable(spec: RunSpec) -> RunSpec:
    """What this daemon can check before launching: paths exist here, the runner exists."""
    for field in ("model", "bundle"):
        value = getattr(spec, field)
        if not Path(value).exists():
            raise unprocessable(
                f"spec.{field} {value} does not exist on the daemon's host: "
                "build or copy it there first, or fix the path"
            )
    _check_runner(spec.runner)
    return spec


def _inline_prepare(spec: PrepareSpec) -> PrepareSpec:
    try:
        validate_prepare_spec(spec)
    except SpecError as exc:
        raise bad_request(f"invalid prepare spec: {exc}") from None
    paths = [("prepare.out", spec.out), ("prepare.model", spec.model)]
    paths += [(f"prepare.sources[{i}].path", s.path) for i, s in enumerate(spec.sources)]
    if spec.work_dir is not None:
        paths.append(("prepare.work_dir", spec.work_dir))
    for field, value in paths:
        if not Path(value).is_absolute():
            raise bad_request(
                f"{field} {value!r} is a relative path: an inline prepare spec needs absolute paths "
                "(or send spec_path, whose relative paths resolve against the spec file)"
            )
    return resolve_paths(spec, Path("/"))


def check_prepare_runnable(spec: PrepareSpec) -> PrepareSpec:
    """The model and every source must be here; `out` must be free or an already built bundle."""
    wanted = [("prepare.model", spec.model), *((f"source {s.label}", s.path) for s in spec.sources)]
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


def _train(request: LaunchRequest) -> Job:
    if request.prepare is not None:
        raise bad_request("`prepare` is a preprocess spec: send it with kind \"preprocess\"")
    if request.surface is not None or request.runner is not None:
        raise bad_request("a training run takes its surface and runner from its spec: leave `surface`/`runner` out")
    if (request.spec is None) == (request.spec_path is None):
        raise bad_request("a launch request needs exactly one of `spec` (inline, absolute paths) or `spec_path`")
    spec = _inline(request.spec) if request.spec is not None else _from_file(str(request.spec_path))
    return train_job(check_runnable(spec))


def _preprocess(request: LaunchRequest) -> Job:
    if request.spec is not None:
        raise bad_request("`spec` is a run spec: a preprocess job takes `prepare` (a PrepareSpec) or `spec_path`")
    if (request.prepare is None) == (request.spec_path is None):
        raise bad_request("a preprocess request needs exactly one of `prepare` (inline, absolute paths) or `spec_path`")
    if request.prepare is not None:
        spec = _inline_prepare(request.prepare)
    else:
        try:
            spec = load_prepare_spec(_spec_file(str(request.spec_path)))
        except SpecError as exc:
            raise unprocessable(str(exc)) from None
    runner = request.runner or "process"
    _check_runner(runner)
    return prepare_job(check_prepare_runnable(spec), request.surface or DEFAULT_SURFACE, runner)


def resolve_launch(request: LaunchRequest) -> Job:
    """The validated job a LaunchRequest asks for, or a RequestError saying why not."""
    if request.kind == "preprocess":
        return _preprocess(request)
    if request.kind == "diagnose":
        raise bad_request("a diagnose job replays a run: start it with POST /runs/{name}/diagnose")
    if request.kind == "gate":
        raise bad_request("a gate job judges an ended run: start it with POST /runs/{name}/gate")
    return _train(request)
