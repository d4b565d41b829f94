"""HTTP+JSON over a Unix socket, with the standard library only.

The routes and bodies are `qwen_daemon.protocol`'s. Every answer, errors
included, is JSON with a Content-Length, so `curl --unix-socket SOCK
http://x/runs` works and the client decodes everything through the same
Structs. No request can take the server down: a bad request is a 4xx
ErrorBody, a bug is a 500 ErrorBody (traceback in the daemon's log only).
The socket is created 0660: access is whoever shares the daemon's group.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import socketserver
import stat
import urllib.parse
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Protocol

import msgspec

from qwen_daemon.config import ConfigError
from qwen_daemon.errors import RequestError, bad_request
from qwen_daemon.protocol import ErrorBody, HealthView, HostView, LaunchRequest, RunDetail, RunList, RunView
from qwen_train.spec import SpecError, check_name

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
_DRAIN_LIMIT_BYTES = 16 << 20
SOCKET_MODE = 0o660


class Backend(Protocol):
    """What the API serves; the Daemon implements it."""

    def health(self) -> HealthView: ...
    def host(self) -> HostView: ...
    def runs(self) -> RunList: ...
    def detail(self, name: str) -> RunDetail: ...
    def launch(self, request: LaunchRequest) -> RunView: ...
    def stop(self, name: str) -> RunView: ...


Action = Callable[["_Handler", list[str]], tuple[int, Any]]


def _health(h: _Handler, _: list[str]) -> tuple[int, Any]:
    return 200, h.server.backend.health()


def _host(h: _Handler, _: list[str]) -> tuple[int, Any]:
    return 200, h.server.backend.host()


def _runs(h: _Handler, _: list[str]) -> tuple[int, Any]:
    return 200, h.server.backend.runs()


def _launch(h: _Handler, _: list[str]) -> tuple[int, Any]:
    body = h.read_body()
    try:
        request = msgspec.json.decode(body, type=LaunchRequest)
    except msgspec.ValidationError as exc:
        raise bad_request(f"invalid launch request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise bad_request(f"malformed JSON in launch request: {exc}") from None
    return 201, h.server.backend.launch(request)


def _detail(h: _Handler, parts: list[str]) -> tuple[int, Any]:
    return 200, h.server.backend.detail(parts[1])


def _stop(h: _Handler, parts: list[str]) -> tuple[int, Any]:
    body = h.read_body()
    if body.strip():
        try:
            msgspec.json.decode(body, type=dict)
        except msgspec.DecodeError as exc:
            raise bad_request(f"stop takes an empty body or a JSON object: {exc}") from None
    return 200, h.server.backend.stop(parts[1])


def route(parts: list[str]) -> dict[str, Action] | None:
    """The methods a path allows, or None for no such route. Run names are checked first,
    so `/runs/..%2Fx` is a bad name (400), not an unknown route."""
    if parts == ["health"]:
        return {"GET": _health}
    if parts == ["host"]:
        return {"GET": _host}
    if parts == ["runs"]:
        return {"GET": _runs, "POST": _launch}
    if len(parts) >= 2 and parts[0] == "runs":
        try:
            check_name(parts[1])
        except SpecError as exc:
            raise bad_request(str(exc)) from None
        if len(parts) == 2:
            return {"GET": _detail}
        if len(parts) == 3 and parts[2] == "stop":
            return {"POST": _stop}
    return None


def split_path(raw: str) -> list[str]:
    """Split before URL-decoding, so an encoded '/' stays inside its segment."""
    path = urllib.parse.urlsplit(raw).path
    return [urllib.parse.unquote(part) for part in path.strip("/").split("/")]


class _Handler(BaseHTTPRequestHandler):
    server: ApiServer
    server_version = "qwen-daemon"
    timeout = 10.0  # a silent client must not hold a thread (or shutdown) for long

    def address_string(self) -> str:
        return "unix-socket"  # client_address of an AF_UNIX peer is not a (host, port) tuple

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("api: " + format, *args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's own errors (bad request line, unknown method) as JSON too."""
        self.close_connection = True
        self._reply(code, ErrorBody(error=message or HTTPStatus(code).phrase, detail=explain))

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise RequestError(411, "chunked request bodies are not supported: send a Content-Length")
        header = self.headers.get("Content-Length")
        if header is None:
            return b""
        try:
            length = int(header)
            if length < 0:
                raise ValueError(header)
        except ValueError:
            raise bad_request(f"Content-Length {header!r} is not a byte count") from None
        if length > MAX_BODY_BYTES:
            self._drain(length)
            raise RequestError(413, f"request body is {length} bytes; the limit is {MAX_BODY_BYTES}")
        return self.rfile.read(length)

    def _drain(self, length: int) -> None:
        """Read a refused body so the client can read the 413 instead of a broken pipe."""
        self.close_connection = True
        if length > _DRAIN_LIMIT_BYTES:
            return
        with contextlib.suppress(OSError):
            while length > 0:
                chunk = self.rfile.read(min(length, 1 << 16))
                if not chunk:
                    break
                length -= len(chunk)

    def _dispatch(self) -> None:
        try:
            status, body = self._handle()
        except RequestError as exc:
            status, body = exc.status, ErrorBody(error=exc.error, detail=exc.detail)
        except Exception as exc:
            log.exception("internal error serving %s %s", self.command, self.path)
            status = 500
            body = ErrorBody(
                error=f"internal error: {type(exc).__name__}: {exc}",
                detail="the daemon logged the traceback and keeps serving",
            )
        self._reply(status, body)

    def _handle(self) -> tuple[int, Any]:
        parts = split_path(self.path)
        methods = route(parts)
        if methods is None:
            raise RequestError(404, f"no such route: {self.command} /{'/'.join(parts)}")
        action = methods.get(self.command)
        if action is None:
            allowed = ", ".join(sorted(methods))
            raise RequestError(405, f"{self.command} is not allowed on /{'/'.join(parts)}: use {allowed}")
        return action(self, parts)

    def _reply(self, status: int, body: Any) -> None:
        data = msgspec.json.encode(body)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except OSError:  # the client went away; nothing to tell it
            self.close_connection = True


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def _clear_socket_path(path: Path) -> None:
    """Remove a dead daemon's socket; refuse to touch anything else."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"{path} exists and is not a socket: remove it or pass another --socket")
    if _answers(path):
        raise ConfigError(f"another daemon is already serving on {path}: stop it or pass another --socket")
    path.unlink()


class ApiServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """One thread per request; shutdown waits for requests in flight (block_on_close)."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, path: Path, backend: Backend, gid: int | None = None) -> None:
        self.backend = backend
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        _clear_socket_path(path)
        old_umask = os.umask(0o117)  # no window in which the socket is wider than 0660
        try:
            super().__init__(str(path), _Handler)
        finally:
            os.umask(old_umask)
        if gid is not None:
            os.chown(path, -1, gid)
        os.chmod(path, SOCKET_MODE)
        self._inode = path.stat().st_ino

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("error while serving a request")

    def server_close(self) -> None:
        """Close, and remove the socket file if it is still ours."""
        super().server_close()
        with contextlib.suppress(OSError):
            if self.path.stat().st_ino == self._inode:
                self.path.unlink()
