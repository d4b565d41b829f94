"""Bad input to a real daemon's API: always a 4xx with a message, and the daemon keeps serving."""

from __future__ import annotations

import grp
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from qwen_daemon.api.server import ApiServer
from qwen_daemon.protocol import HealthView, HostView, LaunchRequest, RunDetail, RunList, RunView
from qwen_daemon.protocol.client import DaemonError
from qwen_daemon.resources.sampler import NO_NVML_NOTE
from qwen_train.spec import encode_spec
from tests.conftest import MakeDir
from tests.test_daemon_harness import (
    DaemonProcess,
    make_spec,
    raw_request,
    remove_tree,
    short_tmp_dir,
    trainer_wrapper,
    wait_until,
)
from tests.test_daemon_sampler import _nvml_present


@pytest.fixture(scope="module")
def daemon(module_dir: MakeDir) -> Iterator[DaemonProcess]:
    short = short_tmp_dir()
    state = module_dir("state")
    proc = DaemonProcess(state, short / "d.sock", trainer_wrapper(short), "--sample-period", "0.2").start()
    yield proc
    proc.stop()
    remove_tree(short)


@pytest.fixture(scope="module")
def paths(module_dir: MakeDir) -> Path:
    return module_dir("inputs")


def post(daemon: DaemonProcess, path: str, body: Any) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return raw_request(daemon.socket, "POST", path, data, {"Content-Type": "application/json"})


def spec_dict(paths: Path, name: str = "api-run", **changes: Any) -> dict[str, Any]:
    spec = json.loads(encode_spec(make_spec(paths, name)))
    spec.update(changes)
    return spec


def assert_error(result: tuple[int, Any], status: int, *fragments: str) -> None:
    code, body = result
    assert code == status, body
    assert isinstance(body, dict) and isinstance(body.get("error"), str), body
    for fragment in fragments:
        assert fragment in body["error"], body


@pytest.fixture(autouse=True)
def still_serving(daemon: DaemonProcess) -> Iterator[None]:
    yield
    assert daemon.client.health().ok, daemon.log()
    assert daemon.proc is not None and daemon.proc.poll() is None


def test_socket_is_0660_and_curl_works(daemon: DaemonProcess) -> None:
    assert stat.S_IMODE(daemon.socket.stat().st_mode) == 0o660
    out = subprocess.run(["curl", "-sS", "--unix-socket", str(daemon.socket), "http://x/runs"],
                         capture_output=True, check=True, timeout=10).stdout
    assert isinstance(msgspec.json.decode(out, type=RunList).runs, list)
    out = subprocess.run(["curl", "-sS", "--unix-socket", str(daemon.socket), "http://x/health"],
                         capture_output=True, check=True, timeout=10).stdout
    health = msgspec.json.decode(out, type=HealthView)
    assert health.ok and health.pid == daemon.proc.pid  # type: ignore[union-attr]


def test_host_reports_the_sampler_and_gpus_or_their_absence(daemon: DaemonProcess) -> None:
    host = wait_until(lambda: (h := daemon.client.host()).sample is not None and h, 5, "a first sample")
    assert isinstance(host, HostView) and host.sampler.alive and host.sampler.period_s == 0.2
    assert host.sample is not None and host.sample.ram_total_bytes > 0
    if _nvml_present():
        assert host.sample.gpus and host.sampler.gpu_note is None, host
    else:
        assert host.sampler.gpu_note == NO_NVML_NOTE and host.sample.gpus == []


def test_malformed_json(daemon: DaemonProcess) -> None:
    assert_error(post(daemon, "/runs", b'{"spec": {'), 400, "malformed JSON")
    assert_error(post(daemon, "/runs", b""), 400, "malformed JSON")
    assert_error(post(daemon, "/runs/whatever/stop", b"{nope"), 400, "JSON")


def test_unknown_run(daemon: DaemonProcess) -> None:
    assert_error(raw_request(daemon.socket, "GET", "/runs/no-such-run"), 404, "no run named 'no-such-run'")
    assert_error(post(daemon, "/runs/no-such-run/stop", {}), 404, "no run named")
    with pytest.raises(DaemonError) as caught:
        daemon.client.run("no-such-run")
    assert caught.value.status == 404


@pytest.mark.parametrize("path", ["/runs/..%2Fx", "/runs/../x", "/runs/..%2F..%2Fetc/stop", "/runs/%2E%2E"])
def test_bad_run_name_in_url(daemon: DaemonProcess, path: str) -> None:
    assert_error(raw_request(daemon.socket, "GET", path), 400, "is not allowed")


def test_bad_run_name_in_spec(daemon: DaemonProcess, paths: Path) -> None:
    assert_error(post(daemon, "/runs", {"spec": spec_dict(paths, name="../x")}), 400, "'../x' is not allowed")
    assert not (daemon.state_dir / "x").exists()


def test_relative_paths_in_inline_spec(daemon: DaemonProcess, paths: Path) -> None:
    result = post(daemon, "/runs", {"spec": spec_dict(paths, bundle="bundles/pilot")})
    assert_error(result, 400, "spec.bundle 'bundles/pilot' is a relative path")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"spec_path": "/x.json", "colour": "red"}, "unknown field `colour`"),
        ({"spec": {"name": "a", "lane": "benchmark", "model": "/m", "bundle": "/b", "epochs": 3}},
         "unknown field `epochs`"),
        ({"spec": {"name": "a", "lane": "general-swedish", "model": "/m", "bundle": "/b"}}, "$.spec.lane"),
        ({"spec": {"name": "a", "lane": "benchmark", "model": "/m", "bundle": "/b",
                   "train": {"max_steps": -1}}}, "train.max_steps must be positive"),
        ([1, 2], "invalid launch request"),
        ({}, "exactly one of"),
    ],
)
def test_invalid_launch_requests(daemon: DaemonProcess, body: Any, fragment: str) -> None:
    assert_error(post(daemon, "/runs", body), 400, fragment)


def test_spec_that_cannot_be_run(daemon: DaemonProcess, paths: Path) -> None:
    assert_error(post(daemon, "/runs", {"spec_path": "specs/a.json"}), 400, "is relative")
    assert_error(post(daemon, "/runs", {"spec_path": str(paths / "missing.json")}), 422, "cannot read run spec")
    broken = paths / "broken.json"
    broken.write_text('{"name": "b", "lane": "benchmark"}')
    assert_error(post(daemon, "/runs", {"spec_path": str(broken)}), 422, "invalid run spec")
    missing = spec_dict(paths, bundle=str(paths / "no-bundle"))
    assert_error(post(daemon, "/runs", {"spec": missing}), 422, "does not exist on the daemon's host")
    assert_error(post(daemon, "/runs", {"spec": spec_dict(paths, runner="docker")}), 422, "--docker-user")


def test_routes_methods_and_sizes(daemon: DaemonProcess) -> None:
    assert_error(raw_request(daemon.socket, "GET", "/nope"), 404, "no such route")
    assert_error(raw_request(daemon.socket, "GET", "/runs/ok/nope"), 404, "no such route")
    assert_error(raw_request(daemon.socket, "DELETE", "/runs"), 405, "use GET, POST")
    assert_error(raw_request(daemon.socket, "GET", "/runs/x/stop"), 405, "use POST")
    assert_error(raw_request(daemon.socket, "BREW", "/runs"), 501)
    assert_error(post(daemon, "/runs", b"{" + b" " * (1 << 20) + b"}"), 413, "limit is 1048576")
    headers = {"Content-Length": "lots"}
    assert_error(raw_request(daemon.socket, "POST", "/runs", None, headers), 400, "Content-Length")


def test_launch_by_spec_path_then_duplicate_is_409(daemon: DaemonProcess, paths: Path) -> None:
    (paths / "model").mkdir(exist_ok=True)
    (paths / "bundle").mkdir(exist_ok=True)
    spec_file = paths / "dup.json"
    spec_file.write_text(json.dumps({"name": "dup", "lane": "benchmark", "model": "model", "bundle": "bundle"}))
    code, body = post(daemon, "/runs", {"spec_path": str(spec_file)})
    assert code == 201, body
    view = msgspec.convert(body, RunView)
    assert view.state == "running" and view.nonce is not None and view.pid is not None
    written = json.loads((daemon.run_dir("dup") / "spec.json").read_text())
    assert written["model"] == str(paths / "model")  # resolved against the spec file
    assert_error(post(daemon, "/runs", {"spec_path": str(spec_file)}), 409, "already active")
    assert daemon.client.stop("dup").state in ("stopping", "stopped")


class _Exploding:
    """A backend whose every call is a bug: the API must answer 500 and keep serving."""

    def health(self) -> HealthView:
        return HealthView(ok=True, version="t", pid=os.getpid())

    def host(self) -> HostView:
        raise RuntimeError("boom")

    def runs(self) -> RunList:
        raise KeyError("gone")

    def detail(self, name: str) -> RunDetail:
        raise ZeroDivisionError(name)

    def launch(self, request: LaunchRequest) -> RunView:
        raise AssertionError("unreachable")

    def stop(self, name: str) -> RunView:
        raise AssertionError("unreachable")


def test_internal_errors_are_500_and_the_server_survives() -> None:
    short = short_tmp_dir()
    server = ApiServer(short / "e.sock", _Exploding())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert_error(raw_request(server.path, "GET", "/host"), 500, "internal error: RuntimeError: boom")
        assert_error(raw_request(server.path, "GET", "/runs"), 500, "KeyError")
        assert raw_request(server.path, "GET", "/health")[0] == 200
    finally:
        server.shutdown()
        server.server_close()
        remove_tree(short)
    assert not (short / "e.sock").exists()


def test_serve_refuses_a_too_long_socket_path(tmp_path: Path) -> None:
    long_socket = "/tmp/" + "s" * 120 + ".sock"
    out = subprocess.run(
        [sys.executable, "-m", "qwen_daemon", "serve", "--state-dir", str(tmp_path), "--socket", long_socket],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 2
    assert "Unix socket paths must be at most 107 bytes" in out.stderr and "Traceback" not in out.stderr


def test_second_daemon_on_the_same_socket_is_refused(daemon: DaemonProcess, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "qwen_daemon", "serve", "--state-dir", str(tmp_path), "--socket", str(daemon.socket)],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 2 and "already serving" in out.stderr, out.stderr


def test_socket_group_is_applied_and_unknown_groups_are_refused(tmp_path: Path) -> None:
    gid = os.getgid() if os.geteuid() != 0 else grp.getgrnam("nogroup").gr_gid if _has_group("nogroup") else 0
    short = short_tmp_dir()
    try:
        server = ApiServer(short / "g.sock", _Exploding(), gid)
        info = (short / "g.sock").stat()
        assert (info.st_gid, stat.S_IMODE(info.st_mode)) == (gid, 0o660)
        server.server_close()
    finally:
        remove_tree(short)
    out = subprocess.run(
        [sys.executable, "-m", "qwen_daemon", "serve", "--state-dir", str(tmp_path), "--socket-group", "no-such-grp"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 2 and "no group named 'no-such-grp'" in out.stderr, out.stderr


def _has_group(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True
