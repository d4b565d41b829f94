"""Checks every launch request shares, before anything touches the registry or the disk.

Each is a refusal with a reason. 400: the request itself is wrong (both or
neither of spec/spec_path, a spec of the wrong kind, relative paths in an
inline spec, an invalid spec). 422: the request is well-formed but what it
points at cannot be run (a spec file that does not load, a model, bundle or
source that is not on this host, a runner this daemon does not have). What a
kind checks of its own spec is in its file under kinds/.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from qwen_daemon.protocol.errors import bad_request, unprocessable
from qwen_train.spec import SpecError

SUPPORTED_RUNNERS = frozenset({"process", "docker"})
S = TypeVar("S")


def spec_file_path(spec_path: str) -> Path:
    if not Path(spec_path).is_absolute():
        raise bad_request(
            f"spec_path {spec_path!r} is relative: give the absolute path of the spec file "
            "on the daemon's host"
        )
    return Path(spec_path)


def require_absolute(fields: Iterable[tuple[str, str]], spec_kind: str) -> None:
    """An inline spec has no file to resolve relative paths against: every path in it must be absolute."""
    for field, value in fields:
        if not Path(value).is_absolute():
            raise bad_request(
                f"{field} {value!r} is a relative path: an inline {spec_kind} needs absolute paths "
                "(or send spec_path, whose relative paths resolve against the spec file)"
            )


def load_from(load: Callable[[Path], S], path: Path) -> S:
    """A spec file that does not load is a 422 with the loader's own message."""
    try:
        return load(path)
    except SpecError as exc:
        raise unprocessable(str(exc)) from None


def check_runner(runner: str) -> None:
    if runner not in SUPPORTED_RUNNERS:
        raise unprocessable(
            f"runner {runner!r} is not available in this daemon yet: "
            f"set runner to one of {sorted(SUPPORTED_RUNNERS)}"
        )
