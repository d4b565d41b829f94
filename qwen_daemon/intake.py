"""Turning a LaunchRequest into a run spec the daemon is willing to launch.

Everything here is a refusal with a reason, before anything touches the
registry or the disk. 400: the request itself is wrong (both or neither of
spec/spec_path, relative paths in an inline spec, an invalid spec). 422: the
request is well-formed but what it points at cannot be run (a spec file that
does not load, a model or bundle that is not on this host, a runner this
daemon does not have).
"""

from __future__ import annotations

from pathlib import Path

from qwen_daemon.errors import RequestError, bad_request, unprocessable
from qwen_daemon.protocol import LaunchRequest
from qwen_train.spec import RunSpec, SpecError, load_spec, validate_spec

SUPPORTED_RUNNERS = frozenset({"process", "docker"})


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


def _from_file(spec_path: str) -> RunSpec:
    if not Path(spec_path).is_absolute():
        raise bad_request(
            f"spec_path {spec_path!r} is relative: give the absolute path of the spec file "
            "on the daemon's host"
        )
    try:
        return load_spec(Path(spec_path))
    except SpecError as exc:
        raise unprocessable(str(exc)) from None


def check_runnable(spec: RunSpec) -> RunSpec:
    """What this daemon can check before launching: paths exist here, the runner exists."""
    for field in ("model", "bundle"):
        value = getattr(spec, field)
        if not Path(value).exists():
            raise unprocessable(
                f"spec.{field} {value} does not exist on the daemon's host: "
                "build or copy it there first, or fix the path"
            )
    if spec.runner not in SUPPORTED_RUNNERS:
        raise unprocessable(
            f"runner {spec.runner!r} is not available in this daemon yet: "
            f"set runner to one of {sorted(SUPPORTED_RUNNERS)}"
        )
    return spec


def resolve_launch(request: LaunchRequest) -> RunSpec:
    """The validated spec a LaunchRequest asks for, or a RequestError saying why not."""
    if (request.spec is None) == (request.spec_path is None):
        raise RequestError(
            400, "a launch request needs exactly one of `spec` (inline, absolute paths) or `spec_path`"
        )
    spec = _inline(request.spec) if request.spec is not None else _from_file(str(request.spec_path))
    return check_runnable(spec)
