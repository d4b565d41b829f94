"""A small client for the daemon's Unix-socket API (used by CLI and dashboard)."""

from __future__ import annotations

import http.client
import socket
from pathlib import Path
from typing import TypeVar

import msgspec

from qwen_daemon.protocol import (
    AuditList,
    BindRootsView,
    ClassChange,
    ErrorBody,
    HealthView,
    HostView,
    LaunchRequest,
    ProbeView,
    RunDetail,
    RunList,
    RunView,
    Surface,
    SurfaceList,
)
from qwen_train.spec import RunSpec

T = TypeVar("T")


class DaemonError(RuntimeError):
    """The daemon answered with an error, or could not be reached."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class DaemonClient:
    def __init__(self, socket_path: Path | str, timeout: float = 10.0) -> None:
        self.socket_path = str(socket_path)
        self.timeout = timeout

    def _request(self, method: str, path: str, kind: type[T], body: bytes | None = None) -> T:
        conn = _UnixConnection(self.socket_path, self.timeout)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonError(
                0,
                f"daemon not reachable at {self.socket_path} ({exc.strerror}); "
                "start it with `qwen-daemon serve` or `systemctl start qwen-daemon`",
            ) from None
        except OSError as exc:
            raise DaemonError(0, f"daemon connection failed at {self.socket_path}: {exc}") from None
        finally:
            conn.close()
        if resp.status >= 400:
            try:
                err = msgspec.json.decode(raw, type=ErrorBody)
                message = err.error + (f": {err.detail}" if err.detail else "")
            except msgspec.MsgspecError:
                message = raw.decode("utf-8", "replace")[:500]
            raise DaemonError(resp.status, message)
        return msgspec.json.decode(raw, type=kind)

    def health(self) -> HealthView:
        return self._request("GET", "/health", HealthView)

    def host(self) -> HostView:
        return self._request("GET", "/host", HostView)

    def runs(self) -> RunList:
        return self._request("GET", "/runs", RunList)

    def run(self, name: str) -> RunDetail:
        return self._request("GET", f"/runs/{name}", RunDetail)

    def launch(self, spec: RunSpec | None = None, spec_path: str | None = None) -> RunView:
        body = msgspec.json.encode(LaunchRequest(spec=spec, spec_path=spec_path))
        return self._request("POST", "/runs", RunView, body)

    def stop(self, name: str) -> RunView:
        return self._request("POST", f"/runs/{name}/stop", RunView, b"{}")

    def resume(self, name: str) -> RunView:
        return self._request("POST", f"/runs/{name}/resume", RunView, b"{}")

    def surfaces(self) -> SurfaceList:
        return self._request("GET", "/surfaces", SurfaceList)

    def set_class(self, name: str, change: ClassChange) -> Surface:
        return self._request("POST", f"/surfaces/{name}/class", Surface, msgspec.json.encode(change))

    def audit(self) -> AuditList:
        return self._request("GET", "/surfaces/audit", AuditList)

    def bind_roots(self) -> BindRootsView:
        return self._request("GET", "/bind-roots", BindRootsView)

    def probe(self) -> ProbeView:
        return self._request("POST", "/bind-roots/probe", ProbeView, b"{}")
