"""HTTP+JSON over a Unix socket, with the standard library only.

The bodies are `qwen_daemon.protocol`'s, the routes `qwen_daemon.routes`'. Every answer, errors
included, is JSON with a Content-Length, so `curl --unix-socket SOCK
http://x/runs` works and the client decodes everything through the same
Structs. No request can take the server down: a bad request is a 4xx
ErrorBody, a bug is a 500 ErrorBody (traceback in the daemon's log only).
Nor can a client hold it: a connection idle for `_Handler.timeout` or not
done within REQUEST_DEADLINE_S is cut, bodies over MAX_BODY_BYTES are
refused, and past MAX_CONNECTIONS new connections get a quick 503.
Garbage gets a complete HTTP response too (status line, Content-Length): a
request line that is not METHOD PATH HTTP/1.x, a header line without a colon,
an over-long line. What such a client still sends is read (a bounded amount)
before the close, so it reads the answer instead of a reset connection.
The socket is created 0660: access is whoever shares the daemon's group,
and every connection's peer credentials are checked again (peercred.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import socketserver
import stat
import threading
import time
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import msgspec

from qwen_daemon.api.peercred import Peer, PeerPolicy, peer_of
from qwen_daemon.api.routes import Backend, route, split_path
from qwen_daemon.config import ConfigError
from qwen_daemon.protocol import ErrorBody
from qwen_daemon.protocol.errors import RequestError, bad_request

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
_DRAIN_LIMIT_BYTES = 16 << 20
SOCKET_MODE = 0o660
REQUEST_DEADLINE_S = 30.0
MAX_CONNECTIONS = 128
_LINGER_BYTES = 1 << 20
_LINGER_S = 1.0


class _Handler(BaseHTTPRequestHandler):
    server: ApiServer
    server_version = "qwen-daemon"
    timeout = 10.0  # a silent client must not hold a thread (or shutdown) for long
    # The stdlib starts every parse at HTTP/0.9, whose answers have no status line and no headers: an error
    # about an unparseable request line went out as a bare JSON body. HTTP/0.9 requests are refused instead.
    default_request_version = "HTTP/1.0"

    raw_requestline: bytes
    peer: Peer | None = None
    _deadline: threading.Timer | None = None
    _linger = False

    def setup(self) -> None:
        super().setup()
        try:
            self.peer = peer_of(self.request)
        except OSError:
            self.peer = None
        # A client that trickles bytes resets the idle timeout forever; the deadline does not.
        self._deadline = threading.Timer(REQUEST_DEADLINE_S, self._cut)
        self._deadline.daemon = True
        self._deadline.start()

    def _cut(self) -> None:
        with contextlib.suppress(OSError):
            self.request.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        with contextlib.suppress(OSError):
            super().finish()
        if self._linger:
            self._read_rest()

    def _read_rest(self) -> None:
        """After an error about unparseable input: end our side, then discard what the client still sends
        (bounded in bytes and time), so the close does not reset the connection under the client's read."""
        deadline = time.monotonic() + _LINGER_S
        left = _LINGER_BYTES
        with contextlib.suppress(OSError):
            self.request.shutdown(socket.SHUT_WR)
            while left > 0 and (wait := deadline - time.monotonic()) > 0:
                self.request.settimeout(wait)
                chunk = self.request.recv(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)

    def parse_request(self) -> bool:
        """The stdlib's parse, stricter: exactly METHOD PATH HTTP/1.x, and every header line a header.

        A header line without a colon would otherwise end the headers silently, and the lines after it
        (a Content-Length among them) would be read as the body."""
        self.command, self.request_version = "", self.default_request_version
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3:
            what = "an empty request line" if not words else f"bad request line {self.requestline[:200]!r}"
            self.send_error(400, what, "send METHOD PATH HTTP/1.1 (HTTP/0.9 requests are not served)")
            return False
        if not super().parse_request():
            return False
        defects = self.headers.defects
        if defects:
            problem = str(defects[0]) or "a header line without a colon"
            self.send_error(400, f"malformed request headers: {problem}", "every header line is NAME: VALUE")
            return False
        return True

    @property
    def backend(self) -> Backend:
        return self.server.backend

    @property
    def actor(self) -> str:
        return self.peer.describe() if self.peer is not None else "unknown peer"

    @property
    def query(self) -> dict[str, list[str]]:
        """The request's query parameters (blank values kept, so `points=` is refused, not ignored)."""
        return urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query, keep_blank_values=True)

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
        """The stdlib's own errors (bad request line, unknown method, over-long lines) as JSON too."""
        self.close_connection = True
        self._linger = True
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
        self._body_read = True
        if length > MAX_BODY_BYTES:
            self._drain(length)
            raise RequestError(413, f"request body is {length} bytes; the limit is {MAX_BODY_BYTES}")
        return self.rfile.read(length)

    def _drain_unread(self) -> None:
        """A request refused before its body was read (403, 404, 405): read the body anyway, so the client,
        still sending it, reads the answer instead of a reset connection."""
        if self._body_read:
            return
        header = self.headers.get("Content-Length", "") if self.headers is not None else ""
        if header.isdigit() and int(header) <= MAX_BODY_BYTES:
            self._drain(int(header))

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
        self._body_read = False
        try:
            status, body = self._handle()
        except RequestError as exc:
            status, body = exc.status, ErrorBody(error=exc.error, detail=exc.detail)
            self._drain_unread()
        except Exception as exc:
            log.exception("internal error serving %s %s", self.command, self.path)
            status = 500
            body = ErrorBody(
                error=f"internal error: {type(exc).__name__}: {exc}",
                detail="the daemon logged the traceback and keeps serving",
            )
        self._reply(status, body)

    def _handle(self) -> tuple[int, Any]:
        refusal = "peer credentials unavailable" if self.peer is None else self.server.policy.refusal(self.peer)
        if refusal is not None:
            log.warning("refused %s %s from %s: %s", self.command, self.path, self.actor, refusal)
            raise RequestError(403, refusal)
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
    request_queue_size = 128  # the listen backlog: a burst of clients must not get EAGAIN at connect
    backend: Backend

    def __init__(self, path: Path, backend: Backend, gid: int | None = None) -> None:
        self.backend = backend
        self.path = path
        self.policy = PeerPolicy(gid)
        self._connections = threading.BoundedSemaphore(MAX_CONNECTIONS)
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

    def process_request(self, request: Any, client_address: Any) -> None:
        """One thread per connection, up to MAX_CONNECTIONS; beyond that a 503, not a queue."""
        if not self._connections.acquire(blocking=False):
            body = msgspec.json.encode(ErrorBody(error="too many connections", detail="retry in a moment"))
            with contextlib.suppress(OSError):
                request.settimeout(1.0)
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
                                + body)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()

    def server_close(self) -> None:
        """Close, and remove the socket file if it is still ours."""
        super().server_close()
        with contextlib.suppress(OSError):
            if self.path.stat().st_ino == self._inode:
                self.path.unlink()
