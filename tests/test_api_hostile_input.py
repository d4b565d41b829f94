"""Hostile input on the socket: every POST route's JSON body is bounded in depth, and every answer,
even to garbage, is a complete HTTP response (status line, headers, a Content-Length its body matches).

A real daemon over its real socket, as in test_daemon_security.py. Deeply nested bodies used to reach
msgspec, which ends in a RecursionError (a 500) on the routes that decode into a dict; a request line
the stdlib could not parse was answered as HTTP/0.9: a bare JSON body without a status line.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import msgspec
import pytest

from qwen_train.safe_read import MAX_JSON_DEPTH
from tests.test_daemon_harness import (
    DaemonProcess,
    make_spec,
    plain_daemon,
    raw_request,
)

POST_ROUTES = {
    "/runs": "invalid launch request",
    "/runs/r1/stop": "invalid stop request",
    "/runs/r1/resume": "invalid resume request",
    "/runs/r1/diagnose": "invalid diagnose request",
    "/runs/r1/gate": "invalid gate request",
    "/surfaces/s1/class": "invalid class change",
    "/bind-roots/probe": "invalid probe request",
    "/gpu/reserve": "invalid GPU reservation request",
    "/gpu/release": "invalid GPU release request",
}
DEEP = f"nested deeper than {MAX_JSON_DEPTH} levels"


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    yield from plain_daemon()


def _arrays(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _objects(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def _inside_a_field(daemon: DaemonProcess, depth: int) -> bytes:
    """A launch request that is valid but for one field, which nests `depth` deep (the whole body: depth + 2)."""
    spec = msgspec.to_builtins(make_spec(daemon.state_dir.parent, "deep"))
    return msgspec.json.encode({"spec": {**spec, "train": "HOLE"}}).replace(b'"HOLE"', _arrays(depth))


@pytest.mark.parametrize("path", sorted(POST_ROUTES))
def test_every_post_route_refuses_deep_json_with_a_400_naming_it(daemon: DaemonProcess, path: str) -> None:
    for body in (_arrays(100_000), _objects(50_000), _arrays(MAX_JSON_DEPTH + 1), b"[" * 200_000):
        status, answer = raw_request(daemon.socket, "POST", path, body)
        assert status == 400, (path, len(body), answer)
        assert answer["error"].startswith(POST_ROUTES[path]) and DEEP in answer["error"], answer


@pytest.mark.parametrize("path", sorted(POST_ROUTES))
def test_every_post_route_refuses_malformed_and_mistyped_json_with_a_400(daemon: DaemonProcess, path: str) -> None:
    mistyped = b"[1, 2]" if path != "/runs" else b"7"
    for body in (b"{", b'{"a": tru', b"\xff\xfe\x00garbage", b'{"a": "\\ud800"', mistyped):
        status, answer = raw_request(daemon.socket, "POST", path, body)
        assert status == 400 and answer["error"].startswith(POST_ROUTES[path]), (path, body, answer)
        assert "internal error" not in answer["error"]


def test_depth_is_counted_inside_fields_and_strings_do_not_count(daemon: DaemonProcess) -> None:
    status, answer = raw_request(daemon.socket, "POST", "/runs", _inside_a_field(daemon, 10_000))
    assert status == 400 and DEEP in answer["error"], answer
    shallow = _inside_a_field(daemon, MAX_JSON_DEPTH - 4)  # within the bound: refused for its type, not its depth
    status, answer = raw_request(daemon.socket, "POST", "/runs", shallow)
    assert status == 400 and DEEP not in answer["error"] and "$.spec.train" in answer["error"], answer
    brackets = msgspec.json.encode({"class": "mechanism", "reason": "[" * 10_000 + "{" * 10_000})
    status, answer = raw_request(daemon.socket, "POST", "/surfaces/brackets/class", brackets)
    assert status == 200 and answer["name"] == "brackets"  # brackets inside a string are text, not nesting


def _exchange(daemon: DaemonProcess, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(15)
        sock.connect(str(daemon.socket))
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def _complete(answer: bytes) -> tuple[int, dict[str, object]]:
    """(status, JSON body) of a complete HTTP/1.x response; fails the test on anything less."""
    head, sep, body = answer.partition(b"\r\n\r\n")
    assert sep, f"no end of headers in {answer[:200]!r}"
    lines = head.split(b"\r\n")
    version, code, _ = lines[0].split(b" ", 2)
    assert version in (b"HTTP/1.0", b"HTTP/1.1"), lines[0]
    headers = dict(line.split(b": ", 1) for line in lines[1:])
    assert int(headers[b"Content-Length"]) == len(body), (headers, body)
    assert headers[b"Content-Type"] == b"application/json"
    decoded: dict[str, object] = msgspec.json.decode(body)
    return int(code), decoded


GARBAGE = {
    "one word": (b"hello\r\n\r\n", 400, "bad request line"),
    "HTTP/0.9 GET": (b"GET /health\r\n\r\n", 400, "bad request line"),
    "HTTP/0.9 POST": (b"POST /runs\r\n\r\n", 400, "bad request line"),
    "four words": (b"GET /health HTTP/1.1 extra\r\n\r\n", 400, "bad request line"),
    "empty line": (b"\r\n\r\n", 400, "empty request line"),
    "bad version": (b"GET /health HTTP/one\r\n\r\n", 400, "Bad request version"),
    "version 9": (b"GET /health HTTP/9.9\r\n\r\n", 505, "Invalid HTTP version"),
    "binary junk": (bytes(range(256)) * 8 + b"\r\n\r\n", 400, "bad request line"),
    "no colon": (b"GET /health HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400, "a header line without a colon"),
    "no header name": (b"GET /health HTTP/1.1\r\n: value\r\n\r\n", 400, "malformed request headers"),
    "long request line": (b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n", 414, "Request-URI Too Long"),
    "long header line": (b"GET /health HTTP/1.1\r\nX-A: " + b"a" * 100_000 + b"\r\n\r\n", 431, "Line too long"),
    "unknown method": (b"BREW /health HTTP/1.1\r\n\r\n", 501, "Unsupported method"),
}


@pytest.mark.parametrize("case", sorted(GARBAGE))
def test_garbage_gets_a_complete_http_response(daemon: DaemonProcess, case: str) -> None:
    data, status, words = GARBAGE[case]
    code, body = _complete(_exchange(daemon, data))
    assert code == status and words in str(body["error"]), (case, code, body)


def test_after_all_of_it_the_daemon_serves_and_logged_no_internal_error(daemon: DaemonProcess) -> None:
    for data, _, _ in GARBAGE.values():
        _exchange(daemon, data)
    assert daemon.client.health().ok
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert "internal error" not in daemon.log() and "Traceback" not in daemon.log()
