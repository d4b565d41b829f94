"""The socket under abuse, peer credentials, names, argv lists, and governance through the API."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwen_daemon.protocol import ClassChange
from qwen_daemon.protocol.client import DaemonError
from tests.conftest import REPO, python_env
from tests.test_daemon_harness import (
    DaemonProcess,
    make_spec,
    plain_daemon,
    raw_request,
)


@pytest.fixture
def daemon() -> Iterator[DaemonProcess]:
    yield from plain_daemon()


def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(str(path))
    return sock


def test_garbage_huge_bodies_and_slow_clients_do_not_stop_service(daemon: DaemonProcess) -> None:
    held = []
    try:
        for _ in range(40):  # slow clients: half a request line, then nothing
            sock = _connect(daemon.socket)
            sock.sendall(b"GET /he")
            held.append(sock)
        for n in range(10):  # random bytes
            sock = _connect(daemon.socket)
            sock.sendall(os.urandom(4096) + (b"\r\n\r\n" if n % 2 else b""))
            held.append(sock)
        big = _connect(daemon.socket)  # a body far over the limit: refused up front, never read
        big.sendall(b"POST /runs HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n" + b"x" * 65536)
        held.append(big)
        huge_header = _connect(daemon.socket)
        huge_header.sendall(b"GET /runs HTTP/1.1\r\nX-A: " + b"a" * 200_000 + b"\r\n\r\n")
        held.append(huge_header)
        # others are served meanwhile, promptly (the client's own timeout is 10 s)
        for _ in range(5):
            assert daemon.client.health().ok
            assert daemon.client.runs().runs == []
        status, body = raw_request(daemon.socket, "POST", "/runs", b"{", {"Content-Type": "application/json"})
        assert status == 400 and "malformed JSON" in body["error"]
        answer = big.recv(4096)
        assert answer.startswith(b"HTTP/1.") and b" 413 " in answer.split(b"\r\n")[0]
    finally:
        for sock in held:
            sock.close()
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert daemon.client.health().ok


def test_peer_credentials_are_checked_even_if_the_socket_mode_is_widened(daemon: DaemonProcess) -> None:
    os.chmod(daemon.socket.parent, 0o711)
    os.chmod(daemon.socket, 0o666)  # an operator's mistake; the peer check still refuses strangers
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: become nobody, ask for /health
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5)
            sock.connect(str(daemon.socket))
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            os.write(write, data)
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answer = pipe.read()
    os.waitpid(pid, 0)
    assert b" 403 " in answer.split(b"\r\n")[0], answer
    assert b"uid 65534 may not use this daemon" in answer
    assert "uid 65534" in daemon.log()
    assert daemon.client.health().ok  # root (and the daemon's user) still may


def test_surface_and_run_names_are_validated(daemon: DaemonProcess) -> None:
    for path in ("/surfaces/..%2Fetc/class", "/surfaces/a%20b/class"):
        status, body = raw_request(daemon.socket, "POST", path, b'{"class": "mechanism", "reason": "x"}')
        assert status == 400 and "not allowed" in body["error"], body
    status, body = raw_request(daemon.socket, "POST", "/surfaces/ok/class", b'{"class": "root", "reason": "x"}')
    assert status == 400 and "invalid class change" in body["error"]


def test_governance_through_the_api_and_cli(daemon: DaemonProcess) -> None:
    spec = make_spec(daemon.state_dir.parent, "gov")
    daemon.client.set_class("story31", ClassChange(klass="provenance", reason="historical evidence"))
    with pytest.raises(DaemonError, match="rule surface-provenance") as info:
        daemon.client.launch(spec=spec.__class__(**{**_fields(spec), "surface": "story31"}))
    assert info.value.status == 403
    cli = [sys.executable, "-m", "qwen_daemon"]
    out = subprocess.run([*cli, "surfaces", "audit", "--socket", str(daemon.socket)], capture_output=True,
                         text=True, env=python_env(), check=True).stdout
    assert "story31" in out and "provenance" in out and "root (uid 0" in out and "historical evidence" in out
    changed = subprocess.run([*cli, "surfaces", "set-class", "story31", "mechanism", "--reason", "reopened",
                              "--socket", str(daemon.socket)], capture_output=True, text=True, env=python_env())
    assert changed.returncode == 0 and "now mechanism" in changed.stdout
    view = daemon.client.launch(spec=spec.__class__(**{**_fields(spec), "surface": "story31"}))
    assert view.surface_class == "mechanism"
    daemon.client.stop("gov")


def _fields(spec: object) -> dict[str, object]:
    return {name: getattr(spec, name) for name in spec.__struct_fields__}  # type: ignore[attr-defined]


def test_every_subprocess_call_is_an_argument_list() -> None:
    """No shell strings anywhere in the daemon: names never reach a shell."""
    for path in (REPO / "qwen_daemon").glob("*.py"):
        text = path.read_text()
        assert not re.search(r"shell\s*=\s*True|os\.system\(|os\.popen\(", text), path
