"""The API's routes: which method on which path calls which Backend operation.

Kept apart from api.py's HTTP server so the request plumbing (limits,
deadlines, peer checks) and the table of operations each stay readable.
An action gets the request (its body, its actor, the backend) and the path
split into segments, and returns (status, body); it raises RequestError for
anything the client got wrong. Run names in paths are checked before any
action runs. Query parameters are read only by the routes that take them,
and those refuse any they do not know (a typo must not silently mean the default).
Every JSON body goes through `decode_body`: nested past MAX_JSON_DEPTH, malformed
or of the wrong shape, it is a 400 naming the route's request, never a 500.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import msgspec

from qwen_daemon.protocol import (
    DEFAULT_POINTS,
    MAX_POINTS,
    AuditList,
    BindRootsView,
    ClassChange,
    DiagnoseRequest,
    GateRequest,
    GateVerdict,
    HealthView,
    HostView,
    LaunchRequest,
    ProbeView,
    RunDetail,
    RunHistory,
    RunList,
    RunResources,
    RunScores,
    RunView,
    Surface,
    SurfaceList,
)
from qwen_daemon.protocol.disk import DiskView
from qwen_daemon.protocol.errors import bad_request
from qwen_daemon.protocol.gpu import GpuStatus, ReserveRequest
from qwen_train.safe_read import check_json_depth
from qwen_train.spec import SpecError, check_name
from qwen_train.status import Diagnosis

T = TypeVar("T")


class Backend(Protocol):
    """What the API serves; the Daemon implements it."""

    def health(self) -> HealthView: ...
    def host(self) -> HostView: ...
    def runs(self) -> RunList: ...
    def detail(self, name: str) -> RunDetail: ...
    def launch(self, request: LaunchRequest, actor: str) -> RunView: ...
    def stop(self, name: str, actor: str) -> RunView: ...
    def resume(self, name: str, actor: str) -> RunView: ...
    def diagnose(self, name: str, request: DiagnoseRequest, actor: str) -> RunView: ...
    def history(self, name: str) -> RunHistory: ...
    def resources(self, name: str, points: int) -> RunResources: ...
    def diagnosis(self, name: str) -> Diagnosis: ...
    def gate(self, name: str, request: GateRequest, actor: str) -> RunView: ...
    def verdict(self, name: str) -> GateVerdict: ...
    def scores(self, name: str) -> RunScores: ...
    def surfaces(self) -> SurfaceList: ...
    def set_class(self, name: str, change: ClassChange, actor: str) -> Surface: ...
    def audit(self) -> AuditList: ...
    def bind_roots(self) -> BindRootsView: ...
    def probe(self) -> ProbeView: ...
    def gpu_status(self) -> GpuStatus: ...
    def gpu_reserve(self, request: ReserveRequest, actor: str) -> GpuStatus: ...
    def gpu_release(self, actor: str) -> GpuStatus: ...
    def disk(self) -> DiskView: ...


class Request(Protocol):
    """What an action needs of the HTTP request (api._Handler provides it)."""

    @property
    def backend(self) -> Backend: ...
    @property
    def actor(self) -> str: ...
    @property
    def query(self) -> dict[str, list[str]]: ...
    def read_body(self) -> bytes: ...


Action = Callable[["Request", list[str]], tuple[int, Any]]


def _health(h: Request, _: list[str]) -> tuple[int, Any]:
    return 200, h.backend.health()


def _host(h: Request, _: list[str]) -> tuple[int, Any]:
    return 200, h.backend.host()


def _runs(h: Request, _: list[str]) -> tuple[int, Any]:
    return 200, h.backend.runs()


def decode_body(body: bytes, kind: type[T], what: str) -> T:
    """`body` as `kind`, or a 400 "invalid WHAT: ..." saying what is wrong. The depth is checked before
    msgspec decodes: a deeply nested body otherwise ends in a RecursionError (a 500) inside the decoder."""
    try:
        check_json_depth(body, f"invalid {what}")
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise bad_request(f"invalid {what}: {exc}") from None
    except (msgspec.DecodeError, RecursionError, MemoryError) as exc:
        raise bad_request(f"invalid {what}: malformed JSON: {str(exc) or type(exc).__name__}") from None
    except ValueError as exc:  # check_json_depth's refusal, which names the limit
        raise bad_request(str(exc)) from None


def _launch(h: Request, _: list[str]) -> tuple[int, Any]:
    request = decode_body(h.read_body(), LaunchRequest, "launch request")
    return 201, h.backend.launch(request, h.actor)


def _detail(h: Request, parts: list[str]) -> tuple[int, Any]:
    return 200, h.backend.detail(parts[1])


def _empty_body(h: Request, what: str) -> None:
    body = h.read_body()
    if body.strip():
        decode_body(body, dict, f"{what} request (it takes an empty body or a JSON object)")


def _stop(h: Request, parts: list[str]) -> tuple[int, Any]:
    _empty_body(h, "stop")
    return 200, h.backend.stop(parts[1], h.actor)


def _resume(h: Request, parts: list[str]) -> tuple[int, Any]:
    _empty_body(h, "resume")
    return 201, h.backend.resume(parts[1], h.actor)


def _optional_body(h: Request, kind: type[T], what: str) -> T:
    """A request body that may be empty (all defaults); anything else must decode as `kind`."""
    body = h.read_body()
    return decode_body(body, kind, f"{what} request") if body.strip() else kind()


def _diagnose(h: Request, parts: list[str]) -> tuple[int, Any]:
    return 201, h.backend.diagnose(parts[1], _optional_body(h, DiagnoseRequest, "diagnose"), h.actor)


def _gate(h: Request, parts: list[str]) -> tuple[int, Any]:
    return 201, h.backend.gate(parts[1], _optional_body(h, GateRequest, "gate"), h.actor)


def _verdict(h: Request, parts: list[str]) -> tuple[int, Any]:
    return 200, h.backend.verdict(parts[1])


def _scores(h: Request, parts: list[str]) -> tuple[int, Any]:
    return 200, h.backend.scores(parts[1])


def _history(h: Request, parts: list[str]) -> tuple[int, Any]:
    return 200, h.backend.history(parts[1])


def _diagnosis(h: Request, parts: list[str]) -> tuple[int, Any]:
    return 200, h.backend.diagnosis(parts[1])


def points_param(query: dict[str, list[str]]) -> int:
    """`points` of GET .../resources: one integer in [1, MAX_POINTS], DEFAULT_POINTS when absent."""
    unknown = sorted(set(query) - {"points"})
    if unknown:
        raise bad_request(f"unknown query parameter {unknown[0]!r} for resources: the only one is `points`")
    values = query.get("points", [])
    if not values:
        return DEFAULT_POINTS
    if len(values) > 1:
        raise bad_request(f"query parameter `points` is given {len(values)} times: give it once")
    text = values[0]
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_POINTS:
        raise bad_request(f"query parameter `points` is {text!r}: it must be an integer from 1 to {MAX_POINTS}")
    return int(text)


def _resources(h: Request, parts: list[str]) -> tuple[int, Any]:
    return 200, h.backend.resources(parts[1], points_param(h.query))


_RUN_ROUTES: dict[str, dict[str, Action]] = {
    "stop": {"POST": _stop},
    "resume": {"POST": _resume},
    "diagnose": {"POST": _diagnose},
    "gate": {"POST": _gate, "GET": _verdict},
    "history": {"GET": _history},
    "diagnosis": {"GET": _diagnosis},
    "resources": {"GET": _resources},
    "scores": {"GET": _scores},
}


def _set_class(h: Request, parts: list[str]) -> tuple[int, Any]:
    change = decode_body(h.read_body(), ClassChange, "class change")
    return 200, h.backend.set_class(parts[1], change, h.actor)


def _probe(h: Request, _: list[str]) -> tuple[int, Any]:
    _empty_body(h, "probe")
    return 200, h.backend.probe()


def _surfaces(h: Request, _: list[str]) -> tuple[int, Any]:
    return 200, h.backend.surfaces()


def _audit(h: Request, _: list[str]) -> tuple[int, Any]:
    return 200, h.backend.audit()


def _bind_roots(h: Request, _: list[str]) -> tuple[int, Any]:
    return 200, h.backend.bind_roots()


def _disk(h: Request, _: list[str]) -> tuple[int, Any]:
    return 200, h.backend.disk()


def _gpu(h: Request, _: list[str]) -> tuple[int, Any]:
    return 200, h.backend.gpu_status()


def _gpu_reserve(h: Request, _: list[str]) -> tuple[int, Any]:
    return 200, h.backend.gpu_reserve(_optional_body(h, ReserveRequest, "GPU reservation"), h.actor)


def _gpu_release(h: Request, _: list[str]) -> tuple[int, Any]:
    _empty_body(h, "GPU release")
    return 200, h.backend.gpu_release(h.actor)


_FIXED: dict[tuple[str, ...], dict[str, Action]] = {
    ("health",): {"GET": _health},
    ("host",): {"GET": _host},
    ("runs",): {"GET": _runs, "POST": _launch},
    ("surfaces",): {"GET": _surfaces},
    ("surfaces", "audit"): {"GET": _audit},
    ("bind-roots",): {"GET": _bind_roots},
    ("bind-roots", "probe"): {"POST": _probe},
    ("disk",): {"GET": _disk},
    ("gpu",): {"GET": _gpu},
    ("gpu", "reserve"): {"POST": _gpu_reserve},
    ("gpu", "release"): {"POST": _gpu_release},
}


def _checked(name: str) -> None:
    try:
        check_name(name)
    except SpecError as exc:
        raise bad_request(str(exc)) from None


def route(parts: list[str]) -> dict[str, Action] | None:
    """The methods a path allows, or None for no such route. Run names are checked first,
    so `/runs/..%2Fx` is a bad name (400), not an unknown route."""
    fixed = _FIXED.get(tuple(parts))
    if fixed is not None:
        return fixed
    if len(parts) >= 2 and parts[0] == "runs":
        _checked(parts[1])
        if len(parts) == 2:
            return {"GET": _detail}
        if len(parts) == 3 and parts[2] in _RUN_ROUTES:
            return _RUN_ROUTES[parts[2]]
    if len(parts) == 3 and parts[0] == "surfaces" and parts[2] == "class":
        _checked(parts[1])
        return {"POST": _set_class}
    return None


def split_path(raw: str) -> list[str]:
    """Split before URL-decoding, so an encoded '/' stays inside its segment."""
    path = urllib.parse.urlsplit(raw).path
    return [urllib.parse.unquote(part) for part in path.strip("/").split("/")]
